// Event webhooks end to end: two nodes on one PostgreSQL, mail relayed to the suite's SMTP peer,
// events POSTed to a local HTTP receiver and checked against the Standard Webhooks reference.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { Webhook } from "standardwebhooks";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";

const TOKEN = "admin-token-for-the-hook-tests";

interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
  event: { id: number; type: string; rcpt: string; class: string | null; reply: { code: number } | null };
}

describe.skipIf(!havePostgres)("event webhooks", () => {
  let dns: DnsTestServer;
  let sink: SmtpPeer;
  const nodes: RunningServer[] = [];
  let receiver: ReturnType<typeof Bun.serve>;
  let sql: postgres.Sql;
  let env: Record<string, string>;
  const received: Received[] = [];
  /** How many more times each path answers 500. */
  const failuresLeft = new Map<string, number>();
  const api = (node: RunningServer, path: string, body?: unknown) =>
    fetch(`http://127.0.0.1:${node.httpPort}${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const hookUrl = (path: string) => `http://127.0.0.1:${receiver.port}${path}`;

  beforeAll(async () => {
    sink = await SmtpPeer.start({
      rcptReply: (address) => {
        if (address.startsWith("gone")) return "550 5.1.1 no such user here";
        if (address.startsWith("full")) return "452 4.2.2 mailbox full";
        // on a domain of its own: a rate-limit reply pauses its whole destination (shaping)
        if (address.startsWith("slow")) return "421 4.7.28 rate limited, try again later";
        return undefined;
      },
    });
    receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const path = new URL(req.url).pathname;
        const body = await req.text();
        received.push({ path, headers: Object.fromEntries(req.headers), body, event: JSON.parse(body) });
        const left = failuresLeft.get(path) ?? 0;
        if (left > 0) {
          failuresLeft.set(path, left - 1);
          return new Response("not now", { status: 500 });
        }
        return new Response("ok");
      },
    });
    dns = await startDnsServer({ "remote.test": { A: ["127.0.0.1"] }, "limited.test": { A: ["127.0.0.1"] } });
    const url = await freshDatabaseUrl();
    env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test" });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["domain", "add", "other.test"], env)).code).toBe(0);
    sql = postgres(url, { max: 2, onnotice: () => {} });
    for (let i = 0; i < 2; i++) {
      nodes.push(
        await startTestServer({
          DATABASE_URL: url,
          POSTERN_HOSTNAME: "mx.example.test",
          POSTERN_ADMIN_TOKEN: TOKEN,
          POSTERN_DNS_SERVERS: dns.spec,
          POSTERN_OUTBOUND_PORT: String(sink.port),
          POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
          POSTERN_RETRY_BASE_SECONDS: "1",
          POSTERN_RETRY_MAX_SECONDS: "2",
        }),
      );
    }
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await sql?.end();
    await sink?.stop();
    await dns?.close();
    await receiver?.stop(true);
  });

  test("hook add, ls and rm on the CLI; the secret is printed once", async () => {
    const added = await runCli(["hook", "add", hookUrl("/cli"), "--events", "bounced,expired"], env);
    expect(added.code).toBe(0);
    const m = /^hook (\d+) added: (\S+)\nsigning secret \(shown once\): (whsec_\S+)\n$/.exec(added.stdout);
    expect(m?.[2]).toBe(hookUrl("/cli"));
    const ls = await runCli(["hook", "ls"], env);
    expect(ls.stdout).toContain(`${m![1]}\t${hookUrl("/cli")}\tbounced,expired\t*\n`);
    expect(ls.stdout).not.toContain("whsec_");
    const bad = await runCli(["hook", "add", hookUrl("/x"), "--events", "opened"], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("events: unknown opened");
    expect((await runCli(["hook", "add", "ftp://x.test/"], env)).stderr).toContain("url: expected http");
    expect((await runCli(["hook", "rm", m![1]!], env)).code).toBe(0);
    expect((await runCli(["hook", "rm", m![1]!], env)).code).toBe(1);
  });

  test("events reach the hooks signed, each once across two nodes; a hard bounce is classed and suppresses, 452 and 421 do not; a refused POST comes again with the same id", async () => {
    const all = (await (await api(nodes[0]!, "/api/hooks", { url: hookUrl("/all") })).json()) as {
      id: number;
      secret: string;
    };
    const bounces = (await (
      await api(nodes[1]!, "/api/hooks", {
        url: hookUrl("/bounces"),
        events: ["bounced"],
        domain: "example.test",
      })
    ).json()) as { secret: string };
    const otherDomain = (await (
      await api(nodes[1]!, "/api/hooks", { url: hookUrl("/other"), domain: "other.test" })
    ).json()) as { secret: string };
    expect(otherDomain.secret).toStartWith("whsec_");
    expect((await api(nodes[0]!, "/api/hooks", { url: hookUrl("/x"), events: ["opened"] })).status).toBe(400);
    const listed = (await (await api(nodes[0]!, "/api/hooks")).json()) as Record<string, unknown>[];
    expect(listed.map((h) => h.url)).toEqual([hookUrl("/all"), hookUrl("/bounces"), hookUrl("/other")]);
    expect(JSON.stringify(listed)).not.toContain("whsec_");
    failuresLeft.set("/bounces", 2);

    const sent = await api(nodes[0]!, "/api/send", {
      from: "app@example.test",
      to: ["gone@remote.test", "full@remote.test", "slow@limited.test", "fine@remote.test"],
      subject: "events",
      text: "hello",
    });
    expect(sent.status).toBe(202);
    const { id } = (await sent.json()) as { id: string };
    const ofAll = () => received.filter((r) => r.path === "/all");
    const find = (path: string, type: string, rcpt: string) =>
      received.find((r) => r.path === path && r.event.type === type && r.event.rcpt === rcpt);
    await waitFor("the events of every recipient", async () =>
      find("/all", "bounced", "gone@remote.test") &&
      find("/all", "delivered", "fine@remote.test") &&
      find("/all", "deferred", "full@remote.test") &&
      find("/all", "deferred", "slow@limited.test") &&
      received.filter((r) => r.path === "/bounces").length >= 3
        ? true
        : undefined,
    );
    // Signed as Standard Webhooks says, under each hook's own secret.
    for (const r of ofAll()) expect(new Webhook(all.secret).verify(r.body, r.headers)).toEqual(r.event);
    for (const r of received.filter((x) => x.path === "/bounces"))
      expect(new Webhook(bounces.secret).verify(r.body, r.headers)).toEqual(r.event);

    expect(find("/all", "accepted", "gone@remote.test")?.event).toMatchObject({ messageId: id });
    expect(find("/all", "bounced", "gone@remote.test")?.event).toMatchObject({
      class: "hard",
      reply: { code: 550, enhanced: "5.1.1" },
      mx: expect.any(String),
      attempt: 1,
    });
    expect(find("/all", "deferred", "full@remote.test")?.event.class).toBe("soft");
    expect(find("/all", "deferred", "slow@limited.test")?.event.class).toBe("rate-limit");
    const suppressed = await sql`select address from suppressions order by address`;
    expect(suppressed.map((s) => s.address)).toEqual(["gone@remote.test"]);

    // Refused twice, then taken: three POSTs of the one bounced event, with the same webhook-id.
    const toBounces = received.filter((r) => r.path === "/bounces");
    expect(toBounces.map((r) => r.event.type)).toEqual(["bounced", "bounced", "bounced"]);
    expect(new Set(toBounces.map((r) => r.headers["webhook-id"])).size).toBe(1);
    const [hook] =
      await sql`select last_delivered_at, last_failure from hooks where url = ${hookUrl("/bounces")}`;
    expect(hook!.last_delivered_at).toBeInstanceOf(Date);
    expect(hook!.last_failure).toBe("HTTP 500 Internal Server Error");

    // Counted by outcome, on whichever node sent them.
    let retried = 0;
    for (const node of nodes) {
      const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
      retried += Number(/^postern_hook_posts_total\{outcome="retried"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    }
    expect(retried).toBe(2);

    // The other domain's hook heard nothing of example.test's mail.
    expect(received.filter((r) => r.path === "/other")).toEqual([]);

    // Two nodes sent, yet no event twice to one hook (the retries above were refused POSTs).
    await Bun.sleep(1500);
    const ids = ofAll().map((r) => r.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(ids.length);
    // and nothing is owed but the newest retries' events (full@ and slow@ keep coming back):
    // a copy sent is gone
    const [{ owed }] = (await sql`
      select count(*)::int as owed from hook_deliveries d join hooks h on h.id = d.hook_id
      where h.url = ${hookUrl("/all")} and (d.status = 'failed' or d.created_at < now() - interval '3 seconds')`) as unknown as [
      { owed: number },
    ];
    expect(owed).toBe(0);

    const gone = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/api/hooks/${all.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(await gone.json()).toEqual({ id: all.id, deleted: true });
  }, 60000);
});
