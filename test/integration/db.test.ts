import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import { LockHeldError } from "../../src/db/lock.ts";
import { migrate } from "../../src/db/migrate.ts";
import { type Database, openDatabase, rowsOf } from "../../src/db/open.ts";
import { deliveries, domains, messages } from "../../src/db/schema.ts";
import { parseTarget } from "../../src/domains/targets.ts";
import { createLogger } from "../../src/log.ts";
import { Enqueuer, QUEUE_CHANNEL } from "../../src/queue/enqueue.ts";
import { newMessageId } from "../../src/queue/ids.ts";
import { tempDir } from "../helpers/cli.ts";
import { databaseDrivers } from "../helpers/pg.ts";
import { waitFor } from "../helpers/server.ts";

const opened: Database[] = [];
afterAll(async () => {
  for (const d of opened) await d.close();
});

const drivers = databaseDrivers();

describe.each(drivers)("migrations on %s", (name, open) => {
  test("apply on an empty database, then again as a no-op, and the schema works", async () => {
    const database = await open();
    opened.push(database);
    await migrate(database);
    await migrate(database);
    const applied: unknown = await database.db.execute(
      sql`select count(*)::int as n from drizzle.__drizzle_migrations`,
    );
    const rows = rowsOf<{ n: number }>(applied);
    expect(rows[0]!.n).toBe(readdirSync("migrations").filter((f) => f.endsWith(".sql")).length);

    await database.db.insert(messages).values({
      id: "m1",
      direction: "inbound",
      mailFrom: "a@example.test",
      size: 3,
      raw: new Uint8Array([0, 13, 10]),
    });
    await database.db
      .insert(deliveries)
      .values({ messageId: "m1", rcpt: "b@example.test", target: "mailbox" });
    const [m] = await database.db.select().from(messages);
    expect(Array.from(m!.raw)).toEqual([0, 13, 10]); // bytea keeps every octet, NUL included
    const [d] = await database.db.select().from(deliveries);
    expect(d!.status).toBe("queued");
    expect(d!.nextAttemptAt).toBeInstanceOf(Date);
    await database.db.delete(messages);
    expect(await database.db.$count(deliveries)).toBe(0); // deliveries go with their message
    expect(await database.ping()).toBe(true);
  });

  // PGlite, built without lz4, keeps pglz: the migration's fallback, which the test above applies
  test.if(name === "postgres")("a message body is stored compressed with lz4", async () => {
    const database = await open();
    opened.push(database);
    await migrate(database);
    const body = new TextEncoder().encode("La de da de da, the same line again.\r\n".repeat(300));
    await database.db
      .insert(messages)
      .values({ id: "m2", direction: "inbound", mailFrom: "a@example.test", size: body.length, raw: body });
    const [row] = rowsOf<{ method: string; stored: number }>(
      await database.db.execute(
        sql`select pg_column_compression(raw) as method, pg_column_size(raw)::int as stored from messages`,
      ),
    );
    expect(row!.method).toBe("lz4");
    expect(row!.stored).toBeLessThan(body.length / 4);
    const [m] = await database.db.select().from(messages);
    expect(Buffer.from(m!.raw).equals(Buffer.from(body))).toBe(true);
  });

  test("a commit of queued mail notifies the queue channel, naming its committer; mailbox-only mail notifies nothing", async () => {
    const database = await open();
    opened.push(database);
    await migrate(database);
    const heard: (string | undefined)[] = [];
    const unlisten = await database.listen(QUEUE_CHANNEL, (payload) => heard.push(payload));
    const enqueuer = new Enqueuer(database.db, createLogger("error"), { origin: "node-a:1" });
    const message = (target: string) => ({
      id: newMessageId(),
      direction: "inbound" as const,
      mailFrom: "s@remote.test",
      raw: new TextEncoder().encode("Subject: n\r\n\r\nbody\r\n"),
      deliveries: [{ rcpt: "r@example.test", target: parseTarget(target) }],
    });
    try {
      await enqueuer.enqueue(message("mailbox"));
      await enqueuer.enqueue(message("relay:inner.test:25"));
      await new Enqueuer(database.db, createLogger("error")).enqueue(message("relay:inner.test:25"));
      await waitFor("two notifications", async () => (heard.length >= 2 ? true : undefined));
      await Bun.sleep(200);
      expect(heard).toEqual(["node-a:1", ""]);
    } finally {
      await unlisten();
    }
  });
});

describe("the embedded database's lock", () => {
  test("a second opener of the same data dir is refused with the holder's PID; the data survives", async () => {
    const dataDir = tempDir();
    const first = await openDatabase({ databaseUrl: undefined, dataDir });
    await migrate(first);
    await first.db
      .insert(domains)
      .values({ name: "kept.test", dkimSelector: "s", dkimRsaKey: "r", dkimEd25519Key: "e" });
    const second = openDatabase({ databaseUrl: undefined, dataDir });
    await expect(second).rejects.toBeInstanceOf(LockHeldError);
    await expect(second).rejects.toThrow(`pid ${process.pid}`);
    await first.close();

    const again = await openDatabase({ databaseUrl: undefined, dataDir });
    opened.push(again);
    expect((await again.db.select().from(domains)).map((d) => d.name)).toEqual(["kept.test"]);
  });
});
