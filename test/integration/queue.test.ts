// The queue against real PostgreSQL: claims, leases, settling and the scheduler loop, with a
// courier written for the test (the couriers' own wire work is tested on their own).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { asc, eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { migrate } from "../../src/db/migrate.ts";
import { type Database, openDatabase } from "../../src/db/open.ts";
import { attempts, deliveries, messages, workers } from "../../src/db/schema.ts";
import { type Courier, destinationOf, type Job } from "../../src/delivery/courier.ts";
import { bounceTarget, Router } from "../../src/delivery/route.ts";
import { Directory } from "../../src/domains/directory.ts";
import { parseTarget } from "../../src/domains/targets.ts";
import { createLogger } from "../../src/log.ts";
import { claimDue, loadMessages, renewLeases } from "../../src/queue/claim.ts";
import { Enqueuer } from "../../src/queue/enqueue.ts";
import { newMessageId } from "../../src/queue/ids.ts";
import { heartbeat } from "../../src/queue/liveness.ts";
import { dsnWriter } from "../../src/queue/notices.ts";
import { Scheduler, type SchedulerOptions } from "../../src/queue/scheduler.ts";
import { type AttemptReport, settle } from "../../src/queue/settle.ts";
import { tempDir } from "../helpers/cli.ts";
import { databaseDrivers, freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";

const log = createLogger("error");

/** A courier whose answer per recipient the test decides; it records every job it gets. */
class ScriptedCourier implements Courier {
  readonly seen: Job[] = [];
  constructor(
    private readonly answer: (job: Job, nth: number) => Pick<AttemptReport, "outcome" | "reply" | "status">,
  ) {}
  async deliver(jobs: Job[]): Promise<AttemptReport[]> {
    return jobs.map((job) => {
      this.seen.push(job);
      const nth = this.seen.filter((j) => j.delivery.id === job.delivery.id).length;
      return { deliveryId: job.delivery.id, remoteMta: "sink.test", durationMs: 1, ...this.answer(job, nth) };
    });
  }
}

function schedulerOptions(database: Database, courier: Courier, owner: string): SchedulerOptions {
  return {
    db: database.db,
    owner,
    courierFor: () => courier,
    policy: { baseSeconds: 0.2, maxSeconds: 1, lifetimeSeconds: 3600, delayWarningSeconds: 3600 },
    dsns: async () => [],
    log,
    concurrency: 10,
    perDestination: 5,
    initialPerDestination: 2,
    jobsPerGroup: 20,
    maxGroupBytes: 1 << 20,
    maxBytesInFlight: 1 << 22,
    leaseSeconds: 2,
    pollMs: 100,
    stopGraceMs: 2000,
    listen: (fn) => database.listen("postern_queue", fn),
  };
}

async function enqueue(
  database: Database,
  count: number,
  target = "relay:sink.test:25",
  { body = "body", recipients = 1 } = {},
): Promise<string[]> {
  const enqueuer = new Enqueuer(database.db, log);
  const ids = Array.from({ length: count }, () => newMessageId());
  await Promise.all(
    ids.map((id, i) =>
      enqueuer.enqueue({
        id,
        direction: "inbound",
        mailFrom: "s@remote.test",
        raw: new TextEncoder().encode(`Subject: ${i}\r\n\r\n${body}\r\n`),
        deliveries: Array.from({ length: recipients }, (_, k) => ({
          rcpt: `r${i}.${k}@example.test`,
          target: parseTarget(target),
        })),
      }),
    ),
  );
  return ids;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error("condition not met in time");
}

const drivers = databaseDrivers();

describe.each(drivers)("the queue on %s", (_name, open) => {
  let database: Database;
  beforeAll(async () => {
    database = await open();
    await migrate(database);
  });
  afterAll(async () => {
    await database?.close();
  });

  test("new mail wakes the scheduler and each delivery is made once", async () => {
    const courier = new ScriptedCourier(() => ({
      outcome: "delivered",
      reply: "250 2.0.0 ok",
      status: "2.0.0",
    }));
    const scheduler = new Scheduler({ ...schedulerOptions(database, courier, "a"), pollMs: 60_000 });
    await scheduler.start();
    try {
      const ids = await enqueue(database, 30);
      await waitFor(async () => courier.seen.length >= 30);
      await Bun.sleep(200);
      expect(courier.seen.map((j) => j.message.id).sort()).toEqual([...ids].sort());
      const rows = await database.db.select().from(deliveries);
      expect(rows.filter((r) => ids.includes(r.messageId)).every((r) => r.status === "delivered")).toBe(true);
    } finally {
      await scheduler.stop();
    }
  });

  test("4xx three times, then delivered: four attempt rows with growing gaps", async () => {
    const courier = new ScriptedCourier((_job, nth) =>
      nth <= 3
        ? { outcome: "deferred", reply: "451 4.3.0 try later", status: "4.3.0" }
        : { outcome: "delivered", reply: "250 2.0.0 ok", status: "2.0.0" },
    );
    const scheduler = new Scheduler(schedulerOptions(database, courier, "b"));
    await scheduler.start();
    try {
      const [id] = await enqueue(database, 1, "relay:retry.test:25");
      const [d] = await database.db.select().from(deliveries).where(eq(deliveries.messageId, id!));
      await waitFor(async () => {
        const [row] = await database.db.select().from(deliveries).where(eq(deliveries.id, d!.id));
        return row!.status === "delivered";
      });
      const tries = await database.db
        .select()
        .from(attempts)
        .where(eq(attempts.deliveryId, d!.id))
        .orderBy(asc(attempts.at));
      expect(tries.map((t) => t.outcome)).toEqual(["deferred", "deferred", "deferred", "delivered"]);
      expect(tries[0]!.reply).toBe("451 4.3.0 try later");
      const gaps = tries.slice(1).map((t, i) => t.at.getTime() - tries[i]!.at.getTime());
      // base 0.2 s doubling, ±20%: about 200, 400, 800 ms (plus polling slack)
      expect(gaps[0]!).toBeGreaterThanOrEqual(150);
      expect(gaps[1]!).toBeGreaterThan(gaps[0]! * 1.2);
      expect(gaps[2]!).toBeGreaterThan(gaps[1]! * 1.2);
      const [final] = await database.db.select().from(deliveries).where(eq(deliveries.id, d!.id));
      expect(final).toMatchObject({
        attempts: 4,
        leaseOwner: null,
        leaseUntil: null,
        lastReply: "250 2.0.0 ok",
      });
    } finally {
      await scheduler.stop();
    }
  });

  test("a 5xx bounces at once", async () => {
    const courier = new ScriptedCourier(() => ({
      outcome: "bounced",
      reply: "550 5.1.1 no such user",
      status: "5.1.1",
    }));
    const scheduler = new Scheduler(schedulerOptions(database, courier, "c"));
    await scheduler.start();
    try {
      const [id] = await enqueue(database, 1, "relay:bounce.test:25");
      await waitFor(async () => {
        const [row] = await database.db.select().from(deliveries).where(eq(deliveries.messageId, id!));
        return row!.status === "bounced";
      });
      expect(courier.seen).toHaveLength(1);
    } finally {
      await scheduler.stop();
    }
  });

  test("a settle from a worker whose lease ran out changes nothing; a removed message does not stop the rest", async () => {
    const [a, b] = await enqueue(database, 2, "relay:settle.test:25");
    const policy = { baseSeconds: 60, maxSeconds: 60, lifetimeSeconds: 3600, delayWarningSeconds: 3600 };
    const report = (id: number, outcome: "delivered" | "deferred") => ({
      deliveryId: id,
      outcome,
      reply: outcome === "delivered" ? "250 ok" : "451 later",
      status: outcome === "delivered" ? "2.0.0" : "4.0.0",
      remoteMta: "h",
      durationMs: 1,
    });
    const slow = await claimDue(database.db, "slow", 100, 1);
    const mine = slow.filter((c) => c.messageId === a || c.messageId === b);
    expect(mine).toHaveLength(2);
    await Bun.sleep(1100);
    const heir = (await claimDue(database.db, "heir", 100, 60)).filter((c) => c.messageId === a);
    expect(heir).toHaveLength(1);
    const msgs = await loadMessages(database.db, [a!, b!]);
    const job = (c: (typeof mine)[number], outcome: "delivered" | "deferred") => ({
      delivery: c,
      message: msgs.get(c.messageId)!,
      report: report(c.id, outcome),
    });
    await settle(database.db, "heir", [job(heir[0]!, "delivered")], policy, async () => []);
    // b's message is removed while "slow" still holds it.
    await database.db.delete(messages).where(eq(messages.id, b!));
    const late = await settle(
      database.db,
      "slow",
      mine.map((c) => job(c, "deferred")),
      policy,
      async () => [],
    );
    expect(late).toHaveLength(0);
    const [row] = await database.db.select().from(deliveries).where(eq(deliveries.messageId, a!));
    expect(row).toMatchObject({ status: "delivered", attempts: 1 });
    const tries = await database.db.select().from(attempts).where(eq(attempts.deliveryId, row!.id));
    expect(tries.map((t) => t.outcome)).toEqual(["delivered"]);
  });

  test("a bounce writes its DSN through the real notice writer; the message comes back whole only to a sender whose SPF passed", async () => {
    // the router reads the domains table inside the settle: it must not wait on the settle itself
    const router = new Router({
      directory: new Directory(database.db),
      resolver: undefined,
      verifier: undefined,
    });
    const dsns = dsnWriter({
      hostname: "mx.test",
      lifetimeSeconds: 3600,
      targetFor: (address) => bounceTarget(router, address),
    });
    const courier = new ScriptedCourier(() => ({
      outcome: "bounced",
      reply: "550 5.1.1 unknown",
      status: "5.1.1",
    }));
    const scheduler = new Scheduler({ ...schedulerOptions(database, courier, "dsn"), dsns });
    await scheduler.start();
    try {
      const [unverified] = await enqueue(database, 1, "relay:dsn.test:25");
      const verified = newMessageId();
      await new Enqueuer(database.db, log).enqueue({
        id: verified,
        direction: "inbound",
        mailFrom: "s@remote.test",
        raw: new TextEncoder().encode("Subject: spf passed\r\n\r\nbody\r\n"),
        authResults: { spf: "pass" },
        deliveries: [{ rcpt: "r@example.test", target: parseTarget("relay:dsn.test:25") }],
      });
      const dsnAbout = async (id: string) => {
        const rows = await database.db.select().from(messages).where(eq(messages.direction, "dsn"));
        return rows.map((r) => new TextDecoder().decode(r.raw)).find((text) => text.includes(id));
      };
      await waitFor(async () => Boolean((await dsnAbout(unverified!)) && (await dsnAbout(verified))));
      // Backscatter: whoever forged s@remote.test gets no copy of the message, only its headers.
      expect(await dsnAbout(unverified!)).toContain("Content-Type: text/rfc822-headers");
      expect(await dsnAbout(unverified!)).not.toContain("Content-Type: message/rfc822");
      expect(await dsnAbout(verified)).toContain("Content-Type: message/rfc822");
      expect(await database.ping()).toBe(true); // the database is not stuck behind the settle
    } finally {
      await scheduler.stop();
    }
  });

  test("a claim hands deliveries out in due order", async () => {
    const ids = await enqueue(database, 15, "relay:order.test:25");
    // due long ago, in the reverse order of their ids (and of any hash of them)
    for (const [i, id] of ids.entries()) {
      await database.db
        .update(deliveries)
        .set({ nextAttemptAt: sql`now() - make_interval(secs => ${1000 + i})` })
        .where(eq(deliveries.messageId, id));
    }
    const claimed = await claimDue(database.db, "order", 100, 60);
    const mine = claimed.filter((c) => ids.includes(c.messageId)).map((c) => c.messageId);
    expect(mine).toEqual([...ids].reverse());
  });

  test("a lease runs out, even while its holder proves it is alive, and another worker delivers", async () => {
    const [id] = await enqueue(database, 1, "relay:lease.test:25");
    // "stuck" claims the delivery and never settles it, but it is alive (a hung process).
    await heartbeat(database.db, "stuck");
    const claimed = await claimDue(database.db, "stuck", 100, 1);
    expect(claimed.map((c) => c.messageId)).toContain(id!);
    const courier = new ScriptedCourier(() => ({ outcome: "delivered", reply: "250 ok", status: "2.0.0" }));
    const scheduler = new Scheduler(schedulerOptions(database, courier, "heir"));
    await scheduler.start();
    try {
      await Bun.sleep(500);
      expect(courier.seen.filter((j) => j.message.id === id)).toHaveLength(0); // still leased
      await waitFor(async () => courier.seen.some((j) => j.message.id === id));
      // seen by the courier a moment before its settle commits
      await waitFor(async () => {
        const [row] = await database.db.select().from(deliveries).where(eq(deliveries.messageId, id!));
        return row!.status === "delivered";
      });
    } finally {
      await scheduler.stop();
    }
  });
  test("a worker that stops proving it is alive loses its leases at once, however long they are", async () => {
    const [id] = await enqueue(database, 1, "relay:crash.test:25");
    await heartbeat(database.db, "crashed");
    const claimed = await claimDue(database.db, "crashed", 100, 3600);
    expect(claimed.map((c) => c.messageId)).toContain(id!);
    expect(await claimDue(database.db, "other", 100, 60)).toEqual([]); // alive: its hour-long lease holds
    // its last proof of life lapses (a kill -9 stops the renewals)
    await database.db
      .update(workers)
      .set({ aliveUntil: sql`now() - interval '1 second'` })
      .where(eq(workers.owner, "crashed"));
    const courier = new ScriptedCourier(() => ({ outcome: "delivered", reply: "250 ok", status: "2.0.0" }));
    const scheduler = new Scheduler(schedulerOptions(database, courier, "heir"));
    const started = Date.now();
    await scheduler.start();
    try {
      await waitFor(async () => courier.seen.some((j) => j.message.id === id), 25_000);
      expect(Date.now() - started).toBeLessThan(25_000); // a new worker waits TAKEOVER_QUIET_MS first
    } finally {
      await scheduler.stop();
    }
  });
});

describe.skipIf(!havePostgres)("message bodies in memory", () => {
  test("are loaded per group, within the byte budget, and every message still goes", async () => {
    const database = await openDatabase({ databaseUrl: await freshDatabaseUrl(), dataDir: tempDir() });
    await migrate(database);
    let loaded = 0;
    let peak = 0;
    const sizes: number[][] = [];
    const courier: Courier = {
      async deliver(jobs) {
        const bytes = jobs.reduce((sum, j) => sum + j.message.raw.length, 0);
        loaded += bytes;
        peak = Math.max(peak, loaded);
        sizes.push(jobs.map((j) => j.message.raw.length));
        await Bun.sleep(50);
        loaded -= bytes;
        return allDelivered(jobs, 50);
      },
    };
    // 40 messages of ~1 KiB to 10 destinations; 2 KiB per group, 5 KiB in flight.
    const enqueuer = new Enqueuer(database.db, log);
    const body = "x".repeat(1000);
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        enqueuer.enqueue({
          id: newMessageId(),
          direction: "inbound",
          mailFrom: "s@remote.test",
          raw: new TextEncoder().encode(`Subject: ${i}\r\n\r\n${body}\r\n`),
          deliveries: [{ rcpt: `r${i}@example.test`, target: parseTarget(`relay:d${i % 10}.test:25`) }],
        }),
      ),
    );
    const scheduler = new Scheduler({
      ...schedulerOptions(database, courier, "budget"),
      maxGroupBytes: 2048,
      maxBytesInFlight: 5 * 1024,
    });
    await scheduler.start();
    try {
      await waitFor(async () => sizes.flat().length >= 40);
      expect(sizes.flat()).toHaveLength(40);
      expect(Math.max(...sizes.map((g) => g.length))).toBe(2);
      expect(peak).toBeGreaterThan(2048);
      expect(peak).toBeLessThanOrEqual(5 * 1024);
    } finally {
      await scheduler.stop();
      await database.close();
    }
  });

  test("a message goes once for all its recipients, however close to the group limit", async () => {
    const database = await openDatabase({ databaseUrl: await freshDatabaseUrl(), dataDir: tempDir() });
    await migrate(database);
    const groups: number[][] = [];
    const courier: Courier = {
      async deliver(jobs) {
        groups.push(jobs.map((j) => j.delivery.id));
        return allDelivered(jobs, 1);
      },
    };
    // 1.5 KB to 4 recipients at one relay: 6 KB if counted per recipient, over the 2 KB limit
    await enqueue(database, 1, "relay:one.test:25", { body: "x".repeat(1500), recipients: 4 });
    const scheduler = new Scheduler({ ...schedulerOptions(database, courier, "split"), maxGroupBytes: 2048 });
    await scheduler.start();
    try {
      await waitFor(async () => groups.flat().length >= 4);
      expect(groups).toHaveLength(1);
    } finally {
      await scheduler.stop();
      await database.close();
    }
  });

  test("a group too big for the room left goes next, before smaller groups that came after it", async () => {
    const database = await openDatabase({ databaseUrl: await freshDatabaseUrl(), dataDir: tempDir() });
    await migrate(database);
    const order: string[] = [];
    const courier: Courier = {
      async deliver(jobs) {
        await Bun.sleep(10);
        for (const j of jobs) order.push(destinationOf(j.delivery.target, j.delivery.rcpt));
        return allDelivered(jobs, 10);
      },
    };
    await enqueue(database, 30, "relay:a.test:25", { body: "x".repeat(3000) });
    await enqueue(database, 1, "relay:x.test:25", { body: "x".repeat(12_000) });
    await enqueue(database, 100, "relay:a.test:25", { body: "x".repeat(3000) });
    const scheduler = new Scheduler({
      ...schedulerOptions(database, courier, "room"),
      maxGroupBytes: 3500,
      maxBytesInFlight: 20_000,
    });
    await scheduler.start();
    try {
      await waitFor(async () => order.length >= 131, 30000);
      // a.test's groups fill the room over and over; x.test's waits for room and then gets it
      expect(order.indexOf("relay:x.test:25")).toBeLessThan(60);
    } finally {
      await scheduler.stop();
      await database.close();
    }
  }, 40000);

  test("the destination that waited for room does not keep the others waiting in turn", async () => {
    const database = await openDatabase({ databaseUrl: await freshDatabaseUrl(), dataDir: tempDir() });
    await migrate(database);
    const order: string[] = [];
    const courier: Courier = {
      async deliver(jobs) {
        await Bun.sleep(50);
        for (const j of jobs) order.push(destinationOf(j.delivery.target, j.delivery.rcpt));
        return allDelivered(jobs, 50);
      },
    };
    await enqueue(database, 30, "relay:x.test:25", { body: "x".repeat(3000) });
    const scheduler = new Scheduler({
      ...schedulerOptions(database, courier, "turns"),
      perDestination: 20,
      initialPerDestination: 20,
      maxGroupBytes: 3500,
      maxBytesInFlight: 10_000,
    });
    await scheduler.start();
    try {
      await Bun.sleep(200); // x.test's backlog fills the budget and waits for room
      await enqueue(database, 5, "relay:y.test:25");
      await waitFor(async () => order.length >= 35, 30000);
      expect(order.lastIndexOf("relay:y.test:25")).toBeLessThan(25);
    } finally {
      await scheduler.stop();
      await database.close();
    }
  }, 40000);

  test("a message whose body cannot be read is deferred; the rest of its group goes", async () => {
    const database = await openDatabase({ databaseUrl: await freshDatabaseUrl(), dataDir: tempDir() });
    await migrate(database);
    const [damaged, ...good] = await enqueue(database, 5, "relay:one.test:25");
    // A damaged row, for real: reading its body raises, as a lost TOAST chunk would.
    await database.db.execute(sql`alter table messages rename to messages_stored`);
    await database.db.execute(
      sql.raw(
        `create function damaged() returns bytea stable language plpgsql as $$ begin raise exception 'damaged row'; end $$`,
      ),
    );
    await database.db.execute(
      sql.raw(`create view messages as select id, received_at, direction, mail_from, helo, client_ip, auth_user, size,
        case when id = '${damaged}' then damaged() else raw end as raw, auth_results, message_id_header, subject,
        envid, ret from messages_stored`),
    );
    const seen = new Map<number, string[]>();
    const scheduler = new Scheduler(schedulerOptions(database, timedCourier("a", 1, seen), "damaged"));
    await scheduler.start();
    try {
      await waitFor(async () => seen.size >= 4);
      const rows = await database.db.select().from(deliveries);
      const bad = rows.find((r) => r.messageId === damaged)!;
      expect(bad).toMatchObject({ status: "deferred", attempts: 1, leaseOwner: null });
      expect(bad.lastReply).toContain("cannot be read");
      expect(rows.filter((r) => good.includes(r.messageId) && r.status === "delivered")).toHaveLength(4);
    } finally {
      await scheduler.stop();
      await database.close();
    }
  });
});

/** Every job delivered, as a courier reports it. */
function allDelivered(jobs: Job[], durationMs: number): AttemptReport[] {
  return jobs.map((j) => ({
    deliveryId: j.delivery.id,
    outcome: "delivered",
    reply: "250 ok",
    status: "2.0.0",
    remoteMta: null,
    durationMs,
  }));
}

/** A courier that spends `ms` on each group and records, per delivery, who attempted it. */
function timedCourier(owner: string, ms: number, seen: Map<number, string[]>): Courier {
  return {
    async deliver(jobs) {
      await Bun.sleep(ms);
      for (const j of jobs) seen.set(j.delivery.id, [...(seen.get(j.delivery.id) ?? []), owner]);
      return allDelivered(jobs, ms);
    },
  };
}

/** Two connections to one fresh, migrated PostgreSQL database, as two instances would have. */
async function sharedDatabase(): Promise<[Database, Database, string]> {
  const url = await freshDatabaseUrl();
  const a = await openDatabase({ databaseUrl: url, dataDir: tempDir() });
  const b = await openDatabase({ databaseUrl: url, dataDir: tempDir() });
  await migrate(a);
  return [a, b, url];
}

/** Schedulers first (they settle through the databases), then the databases. */
async function shutDown(schedulers: Scheduler[], databases: Database[]): Promise<void> {
  for (const s of schedulers) await s.stop();
  for (const d of databases) await d.close();
}

describe.skipIf(!havePostgres)("two schedulers on one PostgreSQL database", () => {
  // One connection at a time to the destination, each attempt 1.5 leases long: the jobs that
  // wait and the one that runs all outlive the lease they were claimed with.
  const slow = { leaseSeconds: 1, jobsPerGroup: 1, perDestination: 1, initialPerDestination: 1 };

  test("leases are renewed: a delivery slower than its lease is still made once", async () => {
    const [a, b] = await sharedDatabase();
    const seen = new Map<number, string[]>();
    const sa = new Scheduler({ ...schedulerOptions(a, timedCourier("a", 1500, seen), "a"), ...slow });
    const sb = new Scheduler({ ...schedulerOptions(b, timedCourier("b", 1500, seen), "b"), ...slow });
    const ids = await enqueue(a, 4, "relay:slow.test:25");
    await sa.start();
    await Bun.sleep(300); // a claims all four before b starts looking
    await sb.start();
    try {
      await waitFor(async () => seen.size >= 4, 30000);
      await Bun.sleep(1200);
      expect(seen.size).toBe(4);
      expect([...seen.values()]).toEqual([["a"], ["a"], ["a"], ["a"]]);
      const rows = await a.db.select().from(deliveries);
      expect(rows.filter((r) => ids.includes(r.messageId) && r.status === "delivered")).toHaveLength(4);
    } finally {
      await shutDown([sa, sb], [a, b]);
    }
  }, 60000);

  test("a waiting delivery whose lease was taken over is left to its new holder", async () => {
    const [a, b] = await sharedDatabase();
    await b.close();
    const seen = new Map<number, string[]>();
    const sa = new Scheduler({ ...schedulerOptions(a, timedCourier("a", 1500, seen), "a"), ...slow });
    await enqueue(a, 2, "relay:slow.test:25");
    await sa.start();
    try {
      await waitFor(async () => (await a.db.select().from(deliveries)).every((r) => r.leaseOwner === "a"));
      // As if "a" had been out of reach for a whole lease and "z" (alive) had claimed what it held.
      await heartbeat(a.db, "z");
      await a.db.update(deliveries).set({ leaseOwner: "z", leaseUntil: sql`now() + interval '1 hour'` });
      await Bun.sleep(4000); // both would be done by now: 2 x 1.5 s, one after the other
      expect(seen.size).toBe(1); // the one already running when the lease was lost
      // ... whose late settle is ignored too: both stay with "z"
      const rows = await a.db.select().from(deliveries);
      expect(rows.filter((r) => r.leaseOwner === "z" && r.status === "queued")).toHaveLength(2);
    } finally {
      await sa.stop();
      await a.close();
    }
  }, 30000);

  test("a row our own claim took back (our lease had run out) is not started a second time", async () => {
    const [a, b] = await sharedDatabase();
    await b.close();
    const seen = new Map<number, string[]>();
    const sa = new Scheduler({
      ...schedulerOptions(a, timedCourier("a", 1000, seen), "a"),
      ...slow,
      leaseSeconds: 60, // no renewal during the test
    });
    await enqueue(a, 2, "relay:slow.test:25");
    await sa.start();
    try {
      await waitFor(async () => (await a.db.select().from(deliveries)).every((r) => r.leaseOwner === "a"));
      // As if the database had been away for a whole lease: both leases are over, and the
      // scheduler's next claim finds its own running and waiting rows due again.
      await a.db.update(deliveries).set({ leaseUntil: sql`now() - interval '1 second'` });
      sa.wake();
      await waitFor(async () => seen.size >= 2);
      await Bun.sleep(1500);
      expect([...seen.values()]).toEqual([["a"], ["a"]]);
    } finally {
      await sa.stop();
      await a.close();
    }
  }, 30000);

  test("renewal skips a row being settled instead of waiting on its lock", async () => {
    const [a, b, url] = await sharedDatabase();
    await b.close();
    await enqueue(a, 3, "relay:slow.test:25");
    const claimed = (await claimDue(a.db, "a", 10, 60)).map((c) => c.id).sort((x, y) => x - y);
    expect(claimed).toHaveLength(3);
    const raw = postgres(url, { max: 1, onnotice: () => {} });
    const locked = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const settling = raw.begin(async (tx) => {
      await tx`select id from deliveries where id = ${claimed[1]!} for update`;
      locked.resolve();
      await release.promise;
    });
    try {
      await locked.promise;
      const lost = await Promise.race([
        renewLeases(a.db, "a", claimed, 60),
        Bun.sleep(3000).then(() => "blocked on the lock" as const),
      ]);
      expect(lost).toEqual(new Set());
    } finally {
      release.resolve();
      await settling;
      await raw.end();
      await a.close();
    }
  });

  test("500 messages, each delivered exactly once", async () => {
    const [a, b] = await sharedDatabase();
    const seen = new Map<number, string[]>();
    const courierOf = (owner: string) => timedCourier(owner, 5, seen);
    const sa = new Scheduler({ ...schedulerOptions(a, courierOf("a"), "a"), jobsPerGroup: 5 });
    const sb = new Scheduler({ ...schedulerOptions(b, courierOf("b"), "b"), jobsPerGroup: 5 });
    await sa.start();
    await sb.start();
    try {
      const ids = await enqueue(a, 500, "relay:many.test:25");
      await waitFor(async () => seen.size >= 500, 60000);
      await Bun.sleep(300);
      expect(seen.size).toBe(500);
      expect([...seen.values()].every((owners) => owners.length === 1)).toBe(true);
      const owners = new Set([...seen.values()].map((o) => o[0]));
      expect(owners).toEqual(new Set(["a", "b"])); // both took a share
      const rows = await a.db.select().from(deliveries);
      expect(rows.filter((r) => ids.includes(r.messageId) && r.status === "delivered")).toHaveLength(500);
    } finally {
      await shutDown([sa, sb], [a, b]);
    }
  }, 90000);
});
