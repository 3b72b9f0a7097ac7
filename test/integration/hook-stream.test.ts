// A hook's cursor over the event stream (hooks/store.ts) on real PostgreSQL: an event whose
// transaction commits after a later one's is still read, never skipped; a batch is resent when its
// record is lost; two nodes never hold one hook at once; a receiver that hangs holds back its own
// hook's events only.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import type { Database } from "../../src/db/open.ts";
import { HookSender } from "../../src/hooks/sender.ts";
import {
  addHook,
  claimHooks,
  type Hook,
  readStream,
  recordStream,
  releaseHook,
} from "../../src/hooks/store.ts";
import { createLogger } from "../../src/log.ts";
import { freshMigratedDatabase, havePostgres } from "../helpers/pg.ts";
import { waitFor } from "../helpers/server.ts";

const POLICY = { baseSeconds: 60, maxSeconds: 60, lifetimeSeconds: 86400 };

describe.skipIf(!havePostgres)("a hook's event stream", () => {
  let database: Database;
  let sql: postgres.Sql;
  const insertEvent = (q: postgres.Sql | postgres.TransactionSql, rcpt: string) =>
    q`insert into events (type, message_id, mail_from, rcpt) values ('accepted', 'M', 'a@example.test', ${rcpt}) returning id`;
  const held = async (owner: string): Promise<Hook> => {
    const [hook] = await claimHooks(database.db, owner, 60);
    expect(hook).toBeDefined();
    return hook!;
  };

  beforeAll(async () => {
    const fresh = await freshMigratedDatabase();
    database = fresh.database;
    sql = postgres(fresh.url, { max: 3, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
    await database?.close();
  });

  test("an event committed late, behind a higher id, is read once its transaction ends; none twice", async () => {
    await addHook(database.db, { url: new URL("http://127.0.0.1:9/"), events: undefined, domain: undefined });
    let releaseSlow!: () => void;
    const slowOpen = new Promise<void>((r) => {
      releaseSlow = r;
    });
    let slowInserted!: () => void;
    const inserted = new Promise<void>((r) => {
      slowInserted = r;
    });
    // The slow transaction takes the lower id, then waits; a fast one commits a higher id meanwhile.
    const slow = sql.begin(async (tx) => {
      await insertEvent(tx, "slow@remote.test");
      slowInserted();
      await slowOpen;
    });
    await inserted;
    await insertEvent(sql, "fast@remote.test");

    let hook = await held("node-a");
    const early = await readStream(database.db, hook, 100);
    // Nothing past the slow transaction is read yet: the fast event waits behind it.
    expect(early.events.map((e) => e.rcpt)).toEqual([]);
    await recordStream(database.db, "node-a", hook, early.next, [], POLICY);

    releaseSlow();
    await slow;
    hook = await held("node-a");
    const later = await readStream(database.db, hook, 100);
    expect(later.events.map((e) => e.rcpt)).toEqual(["slow@remote.test", "fast@remote.test"]);
    await recordStream(
      database.db,
      "node-a",
      hook,
      later.next,
      later.events.map((event) => ({ event, result: { ok: true, reply: "HTTP 200 OK" } })),
      POLICY,
    );
    hook = await held("node-a");
    expect((await readStream(database.db, hook, 100)).events).toEqual([]);
    await recordStream(
      database.db,
      "node-a",
      hook,
      (await readStream(database.db, hook, 100)).next,
      [],
      POLICY,
    );
  });

  test("one node holds a hook at a time; a batch whose record is lost (lease lapsed, taken over) is read again", async () => {
    await insertEvent(sql, "again@remote.test");
    const a = await held("node-a");
    expect(await claimHooks(database.db, "node-b", 60)).toEqual([]);
    const first = await readStream(database.db, a, 100);
    expect(first.events.map((e) => e.rcpt)).toEqual(["again@remote.test"]);
    // node-a stalls past its lease; node-b takes the hook over and reads the same batch
    await sql`update hooks set lease_until = now() - interval '1 second'`;
    const b = await held("node-b");
    expect((await readStream(database.db, b, 100)).events.map((e) => e.rcpt)).toEqual(["again@remote.test"]);
    // node-a's late record changes nothing: the lease is node-b's
    await recordStream(database.db, "node-a", a, first.next, [], POLICY);
    const [row] = await sql`select lease_owner, cursor_id from hooks where id = ${a.id}`;
    expect(row!.lease_owner).toBe("node-b");
    // a refused event becomes a copy to retry, and the cursor moves past it
    const batch = await readStream(database.db, b, 100);
    await recordStream(
      database.db,
      "node-b",
      b,
      batch.next,
      batch.events.map((event) => ({ event, result: { ok: false, reply: "HTTP 503 Service Unavailable" } })),
      POLICY,
    );
    const copies = await sql`select event_id, attempts, status, last_reply from hook_deliveries`;
    expect(copies.map((c) => [c.status, c.attempts, c.last_reply])).toEqual([
      ["pending", 1, "HTTP 503 Service Unavailable"],
    ]);
    const c = await held("node-b");
    expect((await readStream(database.db, c, 100)).events).toEqual([]);
  });

  test("a node takes back a hook it holds but is not sending to (its record cut off by an outage)", async () => {
    await sql`delete from hooks`;
    await addHook(database.db, { url: new URL("http://127.0.0.1:9/"), events: undefined, domain: undefined });
    const hook = await held("node-a");
    expect(await claimHooks(database.db, "node-a", 60, [hook.id])).toEqual([]);
    expect(await claimHooks(database.db, "node-b", 60)).toEqual([]);
    expect((await claimHooks(database.db, "node-a", 60)).map((h) => h.id)).toEqual([hook.id]);
    // a record that renews keeps the lease (more to send); releasing gives it back
    const { next } = await readStream(database.db, hook, 100);
    const kept = await recordStream(database.db, "node-a", hook, next, [], POLICY, {
      renewLeaseSeconds: 600,
    });
    expect(kept.held).toBe(true);
    const [row] =
      await sql`select lease_owner, lease_until > now() + interval '500 seconds' as renewed from hooks`;
    expect([row!.lease_owner, row!.renewed]).toEqual(["node-a", true]);
    await releaseHook(database.db, "node-b", hook.id); // not node-b's to give
    expect(await claimHooks(database.db, "node-b", 60)).toEqual([]);
    await releaseHook(database.db, "node-a", hook.id);
    expect((await claimHooks(database.db, "node-b", 60)).map((h) => h.id)).toEqual([hook.id]);
  });

  test.each([
    ["its stream", false],
    ["its copies due again", true],
  ])("a hook whose receiver never answers holds back its own events only: %s", async (_name, retried) => {
    await sql`delete from hooks`;
    const answered: string[] = [];
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        answered.push(((await req.json()) as { rcpt: string }).rcpt);
        return new Response("ok");
      },
    });
    const waiting = new Set<unknown>();
    const hang = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (socket) => void waiting.add(socket) },
    });
    const hooks = [
      await addHook(database.db, {
        url: new URL(`http://127.0.0.1:${hang.port}/`),
        events: undefined,
        domain: undefined,
      }),
      await addHook(database.db, {
        url: new URL(`http://127.0.0.1:${receiver.port}/`),
        events: undefined,
        domain: undefined,
      }),
    ];
    // an event for both hooks: read from the stream, or (once refused) as copies due again
    const arrive = async (rcpt: string) => {
      const [event] = await insertEvent(sql, rcpt);
      if (!retried) return;
      await sql`update hooks set cursor_tx = pg_snapshot_xmin(pg_current_snapshot()), cursor_id = 0`;
      for (const hook of hooks)
        await sql`insert into hook_deliveries (hook_id, event_id, attempts, next_attempt_at)
          values (${hook.id}, ${event!.id}, 1, now() - interval '1 second')`;
    };
    const sender = new HookSender({
      db: database.db,
      owner: "node-a",
      log: createLogger("error"),
      policy: POLICY,
      timeoutMs: 20_000,
    });
    try {
      await arrive("first@remote.test");
      sender.start();
      await waitFor(
        "the first event at both",
        async () => (answered.length === 1 && waiting.size === 1) || undefined,
      );
      // the hanging receiver still holds the first event's POST; the second event goes anyway
      await arrive("second@remote.test");
      await waitFor("the second event", async () => answered.length === 2 || undefined, 10_000);
      expect(answered).toEqual(["first@remote.test", "second@remote.test"]);
      expect(waiting.size).toBe(1);
    } finally {
      // the hanging POST is cut off as the receiver goes, so stop returns
      hang.stop(true);
      await sender.stop();
      receiver.stop(true);
    }
  });
});
