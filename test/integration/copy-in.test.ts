// Accepted messages written by binary COPY (queue/enqueue.ts copyMessages, db/copy-in.ts) on real
// PostgreSQL: the rows are those the accept statement writes, octet for octet; a COPY that
// PostgreSQL refuses after its data (postgres.js never settles it: porsager/postgres#1173) is given
// up within its guard, rolled back whole, and leaves no connection in a broken transaction; a
// connection cut in the middle of a COPY fails its batch at once and stores none of it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createConnection, createServer, type Socket } from "node:net";
import postgres from "postgres";
import { CopyUnsettled, copyingClient } from "../../src/db/copy-in.ts";
import { type Database, openDatabase } from "../../src/db/open.ts";
import { parseTarget } from "../../src/domains/targets.ts";
import { createLogger } from "../../src/log.ts";
import { copyMessages, Enqueuer, type NewMessage, writeMessages } from "../../src/queue/enqueue.ts";
import { tempDir } from "../helpers/cli.ts";
import { freshMigratedDatabase, havePostgres } from "../helpers/pg.ts";

/**
 * A TCP relay to PostgreSQL that, while `cutting`, closes both sides as the client starts a
 * CopyData message: the connection goes away in the middle of a COPY. It reads the frontend's
 * messages (a type octet and a length) after the startup message (a length alone).
 */
async function copyCutter(target: URL) {
  const state = { cutting: true, cuts: 0 };
  const server = createServer((client: Socket) => {
    const upstream = createConnection(
      Number(target.port || 5432),
      target.hostname.replace(/^\[(.*)\]$/, "$1"),
    );
    let pending = Buffer.alloc(0);
    let started = false;
    client.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const header = started ? 5 : 4;
        if (pending.length < header) return;
        if (started && pending[0] === 0x64 && state.cutting) {
          state.cuts++;
          client.destroy();
          upstream.destroy();
          return;
        }
        const size = (started ? 1 : 0) + pending.readUInt32BE(started ? 1 : 0);
        if (pending.length < size) return;
        upstream.write(pending.subarray(0, size));
        pending = pending.subarray(size);
        started = true;
      }
    });
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on("close", () => b.destroy());
      a.on("error", () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const url = new URL(target.href);
  url.host = `127.0.0.1:${port}`;
  // in clear, so that the relay reads the messages (and no SSLRequest comes before the startup)
  url.searchParams.set("sslmode", "disable");
  return { url: url.href, state, close: () => server.close() };
}

const EVERY_OCTET = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7) % 256);

/** `id` is prefix-n: the message's fields name n alone, so batches of two prefixes compare. */
function message(id: string, o: Partial<NewMessage> = {}): NewMessage {
  const n = id.slice(id.lastIndexOf("-") + 1);
  return {
    id,
    direction: "inbound",
    mailFrom: "sender@example.test",
    helo: "client.example.test",
    clientIp: "192.0.2.7",
    raw: EVERY_OCTET,
    authResults: {
      spf: "pass",
      dkim: [],
      dmarc: { result: "none", policy: null, domain: null },
      note: "é ✓",
    },
    messageIdHeader: `<${n}@example.test>`,
    subject: 'Grüße, "quoted" \\ back\tslash',
    deliveries: [{ rcpt: `rcpt-${n}@example.test`, target: parseTarget("relay:inner.test:25") }],
    ...o,
  };
}

describe.skipIf(!havePostgres)("accepted messages by COPY", () => {
  let database: Database;
  let sql: postgres.Sql;
  let databaseUrl: string;
  const client = () => copyingClient(database.db)!;
  /** Every column of the messages, their deliveries and events, ids and times of writing left out. */
  const stored = async (prefix: string) =>
    sql`select m.direction, m.mail_from, m.helo, m.client_ip, m.auth_user, m.size, m.raw, m.auth_results,
          m.message_id_header, m.subject, m.envid, m.ret, d.rcpt, d.target, d.status, e.type, e.rcpt as event_rcpt
        from messages m join deliveries d on d.message_id = m.id join events e on e.message_id = m.id
        where m.id like ${`${prefix}%`} order by m.id`;

  beforeAll(async () => {
    ({ url: databaseUrl, database } = await freshMigratedDatabase());
    sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
    await database?.close();
  });

  test("a batch copied is stored as the accept statement stores it", async () => {
    const variants = (prefix: string) => [
      message(`${prefix}1`),
      message(`${prefix}2`, {
        helo: undefined,
        clientIp: undefined,
        authResults: undefined,
        subject: undefined,
      }),
      message(`${prefix}3`, {
        direction: "outbound",
        authUser: "user@example.test",
        envid: "ENV-1",
        ret: "HDRS",
      }),
      message(`${prefix}4`, { raw: new Uint8Array(0) }),
    ];
    expect(copyingClient(database.db)).toBeDefined();
    const before = Date.now();
    expect(await copyMessages(client(), variants("copied-"), "node-a")).toBe(true);
    const after = Date.now();
    await writeMessages(database.db, variants("stated-"), "node-a");
    const copied = await stored("copied-");
    expect(copied).toHaveLength(4);
    expect(copied).toEqual(await stored("stated-"));
    expect(Buffer.from(copied[0]!.raw).equals(Buffer.from(EVERY_OCTET))).toBe(true);
    // one time for the batch, in milliseconds since 1970 as the statement writes it
    const times = await sql`select distinct (extract(epoch from received_at) * 1000)::float8 as ms
      from messages where id like 'copied-%'`;
    expect(times).toHaveLength(1);
    expect(times[0]!.ms).toBeGreaterThanOrEqual(before);
    expect(times[0]!.ms).toBeLessThanOrEqual(after);
    expect(Number.isInteger(times[0]!.ms)).toBe(true);
  });

  test("small batches, text with a NUL and big bodies are left to the statement", async () => {
    expect(await copyMessages(client(), [message("small-1"), message("small-2")], "")).toBe(false);
    const nul = [1, 2, 3, 4].map((i) => message(`nul-${i}`, { subject: i === 3 ? "a\0b" : "fine" }));
    expect(await copyMessages(client(), nul, "")).toBe(false);
    const surrogate = [1, 2, 3, 4].map((i) =>
      message(`nul-s${i}`, { authResults: { note: i === 2 ? "\ud800" : "ok" } }),
    );
    expect(await copyMessages(client(), surrogate, "")).toBe(false);
    const big = [1, 2, 3, 4].map((i) => message(`big-${i}`, { raw: new Uint8Array(3 * 1024 * 1024) }));
    expect(await copyMessages(client(), big, "")).toBe(false);
    const [n] = await sql`select count(*)::int as n from messages where id ~ '^(small|nul|big)-'`;
    expect(n!.n).toBe(0);
  });

  test("a COPY refused after its data is given up within the guard and rolled back whole", async () => {
    await writeMessages(database.db, [message("taken-2")], "");
    const batch = [1, 2, 3, 4].map((i) => message(`taken-${i}`));
    const started = performance.now();
    const failure = await copyMessages(client(), batch, "", 300).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(CopyUnsettled);
    expect(performance.now() - started).toBeLessThan(5000);
    const [n] = await sql`select count(*)::int as n from messages where id like 'taken-%'`;
    expect(n!.n).toBe(1);
    const stuck =
      await sql`select count(*)::int as n from pg_stat_activity where state like 'idle in transaction%'`;
    expect(stuck[0]!.n).toBe(0);
    // the connections still serve: the same batch without the taken id goes in
    expect(
      await copyMessages(
        client(),
        [1, 3, 4, 5].map((i) => message(`taken-${i}`)),
        "",
      ),
    ).toBe(true);
  });

  test("a connection cut in the middle of a COPY fails the batch at once and stores none of it", async () => {
    const cutter = await copyCutter(new URL(databaseUrl));
    const proxied = await openDatabase({ databaseUrl: cutter.url, dataDir: tempDir() });
    try {
      const batch = [1, 2, 3, 4].map((i) => message(`cut-${i}`));
      const started = performance.now();
      const failure = await copyMessages(copyingClient(proxied.db)!, batch, "", 10_000).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(cutter.state.cuts).toBe(1);
      expect(failure).toBeInstanceOf(Error);
      expect(failure).not.toBeInstanceOf(CopyUnsettled);
      // told by the connection's end, not by the guard's 10 s
      expect(performance.now() - started).toBeLessThan(5000);
      const [n] = await sql`select count(*)::int as n from messages where id like 'cut-%'`;
      expect(n!.n).toBe(0);
      // the same batch again, on a new connection of the same pool
      cutter.state.cutting = false;
      expect(await copyMessages(copyingClient(proxied.db)!, batch, "")).toBe(true);
      const [m] = await sql`select count(*)::int as n from messages where id like 'cut-%'`;
      expect(m!.n).toBe(4);
    } finally {
      // not awaited: after a cut, postgres.js's end() (on Bun) waits out its 5 s timeout for the
      // cut connection's close, which it has already seen; the pool is gone either way
      void proxied.close().catch(() => {});
      cutter.close();
    }
  });

  test("the enqueuer commits what waits behind a commit in flight by COPY, each caller told once", async () => {
    const enqueuer = new Enqueuer(database.db, createLogger("error"), { origin: "node-a" });
    await Promise.all(Array.from({ length: 12 }, (_, i) => enqueuer.enqueue(message(`queued-${i}`))));
    const [n] = await sql`select count(*)::int as n, count(distinct received_at)::int as commits
      from messages where id like 'queued-%'`;
    expect(n!.n).toBe(12);
    // the first alone, the other eleven gathered behind it: a batch of four or more goes by COPY
    expect(n!.commits).toBeLessThanOrEqual(2);
  });
});
