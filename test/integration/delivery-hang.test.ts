// A destination that stops answering in the middle of a transaction (after the data, before its
// reply): the attempt times out and is deferred, the next one delivers, and each attempt is
// recorded exactly once. The scheduler and the SMTP courier for real, on the embedded database.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { migrate } from "../../src/db/migrate.ts";
import { type Database, openDatabase } from "../../src/db/open.ts";
import { attempts, deliveries } from "../../src/db/schema.ts";
import { fixedPlan, SmtpCourier } from "../../src/delivery/smtp-courier.ts";
import { createResolver } from "../../src/dns/resolver.ts";
import { parseTarget } from "../../src/domains/targets.ts";
import { createLogger } from "../../src/log.ts";
import { Enqueuer } from "../../src/queue/enqueue.ts";
import { newMessageId } from "../../src/queue/ids.ts";
import { Scheduler } from "../../src/queue/scheduler.ts";
import { tempDir } from "../helpers/cli.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { waitFor } from "../helpers/server.ts";

const log = createLogger("error");

describe("a destination that hangs after the data", () => {
  let database: Database;
  let sink: SmtpPeer;
  beforeAll(async () => {
    database = await openDatabase({ databaseUrl: undefined, dataDir: tempDir() });
    await migrate(database);
    sink = await SmtpPeer.start({ hangAfterData: true });
  }, 30000);
  afterAll(async () => {
    await sink?.stop();
    await database?.close();
  });

  test("is deferred on a timeout, delivered on the retry, and every attempt is settled once", async () => {
    const courier = new SmtpCourier({
      helo: "mx.example.test",
      resolver: await createResolver(["127.0.0.1:9"]),
      plan: fixedPlan({ name: "127.0.0.1", port: sink.port }),
      timeouts: { dataEnd: 500 },
    });
    const scheduler = new Scheduler({
      db: database.db,
      owner: "hang-test",
      courierFor: () => courier,
      policy: { baseSeconds: 0.5, maxSeconds: 1, lifetimeSeconds: 3600, delayWarningSeconds: 3600 },
      dsns: async () => [],
      log,
      concurrency: 4,
      perDestination: 2,
      initialPerDestination: 1,
      jobsPerGroup: 10,
      maxGroupBytes: 1 << 20,
      maxBytesInFlight: 1 << 22,
      leaseSeconds: 30,
      pollMs: 100,
      stopGraceMs: 2000,
    });
    const id = newMessageId();
    await new Enqueuer(database.db, log).enqueue({
      id,
      direction: "inbound",
      mailFrom: "s@remote.test",
      raw: new TextEncoder().encode("Subject: hang\r\n\r\nbody\r\n"),
      deliveries: [{ rcpt: "r@example.test", target: parseTarget(`relay:127.0.0.1:${sink.port}`) }],
    });
    await scheduler.start();
    try {
      // the first transaction's data arrived and its reply never will: answer the next ones
      await waitFor("the data of the first try", async () => (sink.received.length > 0 ? true : undefined));
      sink.behaviour.hangAfterData = false;
      const [delivery] = await database.db.select().from(deliveries).where(eq(deliveries.messageId, id));
      const rows = await waitFor("delivered", async () => {
        const [d] = await database.db.select().from(deliveries).where(eq(deliveries.id, delivery!.id));
        return d!.status === "delivered" ? d : undefined;
      });
      expect(rows.attempts).toBe(2);
      const tries = await database.db.select().from(attempts).where(eq(attempts.deliveryId, delivery!.id));
      expect(tries.map((t) => t.outcome).sort()).toEqual(["deferred", "delivered"]);
      expect(tries.find((t) => t.outcome === "deferred")!.reply).toContain("no reply after end of data");
    } finally {
      await scheduler.stop();
    }
  }, 30000);
});
