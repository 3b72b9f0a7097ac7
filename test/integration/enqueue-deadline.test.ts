// A database that stops answering must not hold sessions for good: past the enqueue deadline each
// waiting message is refused for now (the session says 451), and one not yet written never is.
import { describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import postgres from "postgres";
import { messages } from "../../src/db/schema.ts";
import { createLogger } from "../../src/log.ts";
import { Enqueuer, EnqueueTimeout, type NewMessage } from "../../src/queue/enqueue.ts";
import { newMessageId } from "../../src/queue/ids.ts";
import { freshMigratedDatabase, havePostgres } from "../helpers/pg.ts";

const message = (): NewMessage => ({
  id: newMessageId(),
  direction: "inbound",
  mailFrom: "s@remote.test",
  raw: new TextEncoder().encode("Subject: s\r\n\r\nbody\r\n"),
  deliveries: [{ rcpt: "a@example.test", target: { kind: "mailbox" } }],
});

const outcome = (p: Promise<void>) =>
  p.then(
    () => "committed",
    (e: unknown) => e,
  );

describe.skipIf(!havePostgres)("the enqueue deadline", () => {
  test("a hung commit gives up in time; a message still waiting is never written", async () => {
    const { url, database } = await freshMigratedDatabase();
    const blocker = postgres(url, { max: 1, onnotice: () => {} });
    const locked = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const lock = blocker.begin(async (tx) => {
      await tx`lock table messages in access exclusive mode`;
      locked.resolve();
      await release.promise;
    });
    const committed: string[] = [];
    const enqueuer = new Enqueuer(database.db, createLogger("error"), {
      onCommitted: (ids) => committed.push(...ids),
      deadlineMs: 500,
    });
    try {
      await locked.promise;
      const inFlight = message();
      const waiting = message();
      const started = performance.now();
      const [first, second] = await Promise.all([
        outcome(enqueuer.enqueue(inFlight)),
        outcome(enqueuer.enqueue(waiting)),
      ]);
      expect(performance.now() - started).toBeLessThan(3000);
      expect(first).toBeInstanceOf(EnqueueTimeout);
      expect((first as EnqueueTimeout).mayCommit).toBe(true);
      expect(second).toBeInstanceOf(EnqueueTimeout);
      expect((second as EnqueueTimeout).mayCommit).toBe(false);

      release.resolve();
      await lock;
      const later = message();
      expect(await outcome(enqueuer.enqueue(later))).toBe("committed");
      const stored = async (m: NewMessage) =>
        (await database.db.select({ id: messages.id }).from(messages).where(eq(messages.id, m.id))).length;
      // The transaction under way when the deadline passed commits once the lock goes.
      expect(await stored(inFlight)).toBe(1);
      expect(await stored(waiting)).toBe(0);
      expect(await stored(later)).toBe(1);
      expect(committed).toEqual([inFlight.id, later.id]);
    } finally {
      release.resolve();
      await lock.catch(() => {});
      await blocker.end();
      await database.close();
    }
  });
});
