// Outbound shaping across two nodes on one PostgreSQL: MX records (a local DNS server) put
// gmail.test and googlemail.test on *.google.test, shaped together; other domains flow freely.
// A destination that answers 421 4.7.28 is paused on every node, then resumes in slow start.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { migrate } from "../../src/db/migrate.ts";
import { openDatabase } from "../../src/db/open.ts";
import { COOLDOWN_SECONDS, Shaper } from "../../src/delivery/shaping.ts";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { type PeerConnection, SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";

const TOKEN = "admin-token-for-the-shaping-tests";
const GOOGLE = /@(gmail|googlemail)\.test$/;

/** The most connections open at once among these. */
function mostAtOnce(connections: PeerConnection[]): number {
  const edges = connections.flatMap((c) => [
    [c.openedAt, 1],
    [c.closedAt ?? Number.MAX_SAFE_INTEGER, -1],
  ]);
  edges.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let open = 0;
  let most = 0;
  for (const [, d] of edges) {
    open += d!;
    most = Math.max(most, open);
  }
  return most;
}

describe.skipIf(!havePostgres)("outbound shaping", () => {
  let dns: DnsTestServer;
  let sink: SmtpPeer;
  let sql: postgres.Sql;
  let url: string;
  let env: Record<string, string>;
  const nodes: RunningServer[] = [];
  const send = (i: number, to: string) =>
    fetch(`http://127.0.0.1:${nodes[i % 2]!.httpPort}/api/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ from: "news@example.test", to: [to], subject: `to ${to}`, text: "hello" }),
    });

  beforeAll(async () => {
    sink = await SmtpPeer.start({
      rcptReply: (a) => (a.startsWith("slow@") ? "421 4.7.28 rate limited, try again later" : undefined),
    });
    dns = await startDnsServer({
      "gmail.test": { MX: [{ exchange: "mx1.google.test", priority: 10 }] },
      "googlemail.test": { MX: [{ exchange: "mx2.google.test", priority: 10 }] },
      "mx1.google.test": { A: ["127.0.0.1"] },
      "mx2.google.test": { A: ["127.0.0.1"] },
      "other.test": { A: ["127.0.0.1"] },
      "yahoo.test": { A: ["127.0.0.1"] },
    });
    url = await freshDatabaseUrl();
    env = cliEnv({ DATABASE_URL: url });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    const shaped = await runCli(
      ["shape", "add", "mx:.google.test", "--per-minute", "10", "--connections", "2"],
      env,
    );
    expect(shaped.stdout).toBe("shape mx:.google.test: connections 2, per minute 10, per hour -\n");
    sql = postgres(url, { max: 2, onnotice: () => {} });
    for (let i = 0; i < 2; i++)
      nodes.push(
        await startTestServer({
          DATABASE_URL: url,
          POSTERN_ADMIN_TOKEN: TOKEN,
          POSTERN_DNS_SERVERS: dns.spec,
          POSTERN_OUTBOUND_PORT: String(sink.port),
          POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
          POSTERN_RETRY_BASE_SECONDS: "600",
          POSTERN_RETRY_MAX_SECONDS: "600",
        }),
      );
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await sql?.end();
    await sink?.stop();
    await dns?.close();
  });

  test("mx:.google.test: at most 10 messages a minute and 2 connections over both nodes; other mail flows", async () => {
    const sends: Promise<Response>[] = [];
    for (let i = 0; i < 14; i++) sends.push(send(i, `u${i}@${i % 2 ? "gmail" : "googlemail"}.test`));
    for (let i = 0; i < 4; i++) sends.push(send(i, `o${i}@other.test`));
    for (const r of await Promise.all(sends)) expect(r.status).toBe(202);

    await waitFor("other.test's mail", async () =>
      sink.messages.filter((m) => m.recipients[0]!.endsWith("@other.test")).length === 4 ? true : undefined,
    );
    // Every google recipient is delivered, or waits for the next minute's budget.
    const rows = await waitFor("the google mail settled", async () => {
      const r =
        await sql`select rcpt, status, last_reply, next_attempt_at from deliveries where rcpt ~ 'google|gmail'`;
      const settled = r.filter(
        (d) =>
          d.status === "delivered" || (d.status === "deferred" && /budget is used up/.test(d.last_reply)),
      );
      return settled.length === 14 ? r : undefined;
    });
    const google = sink.messages.filter((m) => GOOGLE.test(m.recipients[0]!));
    const perMinute = Map.groupBy(google, (m) => Math.floor(m.at / 60_000));
    for (const batch of perMinute.values()) expect(batch.length).toBeLessThanOrEqual(10);
    expect(google.length).toBeGreaterThanOrEqual(Math.min(10, 14));
    for (const d of rows.filter((r) => r.status === "deferred"))
      expect((d.next_attempt_at as Date).getTime() % 60_000).toBe(0); // the next minute, not the backoff
    const googleConnections = sink.connections.filter((c) => c.rcpts.some((a) => GOOGLE.test(a)));
    expect(mostAtOnce(googleConnections)).toBeLessThanOrEqual(2);
  }, 30000);

  test("421 4.7.28 pauses the destination on every node, without a connection; it resumes in slow start", async () => {
    expect((await send(0, "slow@yahoo.test")).status).toBe(202);
    await waitFor("the pause", async () => {
      const [p] = await sql`select * from destination_pauses where key = 'yahoo.test'`;
      return p;
    });
    const before = sink.connections.length;
    const sent = await send(1, "fine@yahoo.test");
    const { id } = (await sent.json()) as { id: string };
    const [waiting] = await waitFor("the paused delivery", async () => {
      const r =
        await sql`select status, last_reply from deliveries where message_id = ${id} and status = 'deferred'`;
      return r.length > 0 ? r : undefined;
    });
    expect(waiting!.last_reply).toMatch(
      /^451 4\.7\.0 yahoo\.test paused until \d\d:\d\d:\d\d UTC because yahoo\.test said: 421 4\.7\.28 rate limited/,
    );
    expect(sink.connections.length).toBe(before); // no connection was made for it
    const ls = await runCli(["shape", "ls"], env);
    expect(ls.stdout).toContain("yahoo.test\tpaused until ");
    const metrics = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^postern_destinations_paused 1$/m);

    // The pause is over (as if a minute had passed): retried, delivered.
    await sql`update destination_pauses set paused_until = now() - interval '1 second' where key = 'yahoo.test'`;
    const retried = await fetch(`http://127.0.0.1:${nodes[1]!.httpPort}/api/messages/${id}/retry`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(retried.status).toBe(200);
    await waitFor("delivered after the pause", async () =>
      sink.messages.some((m) => m.recipients.includes("fine@yahoo.test")) ? true : undefined,
    );
  }, 30000);

  test("the cool-down doubles while the destination keeps refusing, up to an hour", async () => {
    const database = await openDatabase({ databaseUrl: url, dataDir: tempDir() });
    try {
      await migrate(database);
      const shaper = new Shaper(database.db, "test");
      const t0 = new Date("2026-12-03T10:00:00Z");
      const seconds = async (at: Date) =>
        ((await shaper.pause("slow.test", "421", at)).getTime() - at.getTime()) / 1000;
      expect(await seconds(t0)).toBe(COOLDOWN_SECONDS.first);
      expect(await seconds(new Date(t0.getTime() + 70_000))).toBe(120);
      expect(await seconds(new Date(t0.getTime() + 200_000))).toBe(240);
      // long quiet after the pause ended: back to the first cool-down
      expect(await seconds(new Date(t0.getTime() + 3_600_000))).toBe(COOLDOWN_SECONDS.first);
      let at = t0.getTime() + 7_200_000;
      let last = 0;
      for (let i = 0; i < 10; i++) {
        last = await seconds(new Date(at));
        at += last * 1000 + 1000;
      }
      expect(last).toBe(COOLDOWN_SECONDS.max);
    } finally {
      await database.close();
    }
  });
});
