// Finished messages leave the database after the history period; pending and mailbox mail stays.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, inArray, sql } from "drizzle-orm";
import { migrate } from "../../src/db/migrate.ts";
import type { Database } from "../../src/db/open.ts";
import { attempts, type DeliveryStatus, deliveries, messages } from "../../src/db/schema.ts";
import { parseTarget } from "../../src/domains/targets.ts";
import { createLogger } from "../../src/log.ts";
import { Enqueuer } from "../../src/queue/enqueue.ts";
import { HistoryPruner, purgeFinished } from "../../src/queue/history.ts";
import { newMessageId } from "../../src/queue/ids.ts";
import { databaseDrivers } from "../helpers/pg.ts";

const log = createLogger("error");

describe.each(databaseDrivers())("history on %s", (_name, open) => {
  let database: Database;
  beforeAll(async () => {
    database = await open();
    await migrate(database);
  });
  afterAll(async () => {
    await database?.close();
  });

  /** A message with one delivery per [target, status], received `daysAgo` days ago. */
  async function message(daysAgo: number, ...rcpts: [string, DeliveryStatus][]): Promise<string> {
    const id = newMessageId();
    await new Enqueuer(database.db, log).enqueue({
      id,
      direction: "inbound",
      mailFrom: "s@remote.test",
      raw: new TextEncoder().encode("Subject: s\r\n\r\nbody\r\n"),
      deliveries: rcpts.map(([target], i) => ({ rcpt: `r${i}@example.test`, target: parseTarget(target) })),
    });
    await database.db
      .update(messages)
      .set({ receivedAt: sql`now() - make_interval(days => ${daysAgo})` })
      .where(eq(messages.id, id));
    const rows = await database.db.select().from(deliveries).where(eq(deliveries.messageId, id));
    for (const [i, [, status]] of rcpts.entries()) {
      await database.db.update(deliveries).set({ status }).where(eq(deliveries.id, rows[i]!.id));
      await database.db.insert(attempts).values({ deliveryId: rows[i]!.id, durationMs: 1, outcome: status });
    }
    return id;
  }

  const relay = "relay:inner.test:25";

  test("purges finished messages older than the period, with their deliveries and attempts", async () => {
    const old = {
      delivered: await message(8, [relay, "delivered"]),
      bounced: await message(8, [relay, "bounced"], ["mx", "delivered"]),
      deferred: await message(8, [relay, "delivered"], ["mx", "deferred"]),
      queued: await message(8, [relay, "queued"]),
      mailbox: await message(30, ["mailbox", "delivered"]),
      mailboxAndRelay: await message(8, ["mailbox", "delivered"], [relay, "delivered"]),
    };
    const recent = await message(6, [relay, "delivered"]);
    const deliveryIds = (
      await database.db
        .select({ id: deliveries.id })
        .from(deliveries)
        .where(inArray(deliveries.messageId, [old.delivered, old.bounced]))
    ).map((r) => r.id);

    expect(await purgeFinished(database.db, 7)).toBe(2);

    const left = new Set((await database.db.select({ id: messages.id }).from(messages)).map((r) => r.id));
    expect(left.has(old.delivered)).toBe(false);
    expect(left.has(old.bounced)).toBe(false);
    for (const kept of [old.deferred, old.queued, old.mailbox, old.mailboxAndRelay, recent]) {
      expect(left.has(kept)).toBe(true);
    }
    expect(await database.db.select().from(deliveries).where(inArray(deliveries.id, deliveryIds))).toEqual(
      [],
    );
    expect(
      await database.db.select().from(attempts).where(inArray(attempts.deliveryId, deliveryIds)),
    ).toEqual([]);
    expect(await purgeFinished(database.db, 7)).toBe(0);
  });

  test("goes batch by batch", async () => {
    for (let i = 0; i < 5; i++) await message(10, [relay, "delivered"]);
    expect(await purgeFinished(database.db, 7, 2)).toBe(2);
    expect(await purgeFinished(database.db, 7, 2)).toBe(2);
    expect(await purgeFinished(database.db, 7, 2)).toBe(1);
  });

  test("the pruner purges on its own timer; 0 days keeps everything", async () => {
    const keepAll = new HistoryPruner(database.db, 0, log, 50);
    const id = await message(400, [relay, "delivered"]);
    keepAll.start();
    await Bun.sleep(200);
    await keepAll.stop();
    expect(await database.db.select().from(messages).where(eq(messages.id, id))).toHaveLength(1);

    const pruner = new HistoryPruner(database.db, 7, log, 50);
    pruner.start();
    try {
      const deadline = Date.now() + 5000;
      while (
        Date.now() < deadline &&
        (await database.db.select().from(messages).where(eq(messages.id, id))).length
      ) {
        await Bun.sleep(50);
      }
      expect(await database.db.select().from(messages).where(eq(messages.id, id))).toHaveLength(0);
    } finally {
      await pruner.stop();
    }
  });
});
