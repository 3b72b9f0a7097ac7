// Per-IP limits against a real client from chosen loopback addresses (Python's smtplib): the AUTH
// lockout (held in PostgreSQL, so across nodes) and the inbound message rate on port 25.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { smtplibSession } from "../helpers/smtplib.ts";
import { swaks } from "../helpers/swaks.ts";

const PASSWORD = "right-password";

describe.skipIf(!havePostgres)("per-IP limits", () => {
  const nodes: RunningServer[] = [];
  let dns: DnsTestServer;
  let shopKey = "";
  let env: Record<string, string>;

  beforeAll(async () => {
    // A DNSBL zone that lists 127.0.0.2 (as Spamhaus lists its test address).
    dns = await startDnsServer({ "2.0.0.127.zone.test": { A: ["127.0.0.2"], ttl: 60 } });
    const url = await freshDatabaseUrl();
    env = cliEnv({ DATABASE_URL: url });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    expect(
      (await runCli(["user", "add", "alice@example.test", "--password-stdin"], env, `${PASSWORD}\n`)).code,
    ).toBe(0);
    expect(
      (
        await runCli(
          ["user", "add", "bob@example.test", "--password-stdin", "--limit-per-hour", "3"],
          env,
          `${PASSWORD}\n`,
        )
      ).code,
    ).toBe(0);
    const key = await runCli(
      ["key", "add", "shop", "--domain", "example.test", "--limit-per-hour", "2"],
      env,
    );
    shopKey = /(pk_\S+)/.exec(key.stdout)![1]!;
    for (let i = 0; i < 2; i++)
      nodes.push(
        await startTestServer({
          DATABASE_URL: url,
          POSTERN_AUTH_LOCKOUT_FAILURES: "3",
          POSTERN_INBOUND_PER_MINUTE: "4",
          POSTERN_DNS_SERVERS: dns.spec,
          POSTERN_DNSBL_ZONES: "zone.test",
        }),
      );
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await dns?.close();
  });

  const login = (node: RunningServer, source: string, password: string) =>
    smtplibSession({
      port: node.smtpPorts.submissions,
      tls: true,
      source,
      user: "alice@example.test",
      password,
    });

  test("wrong passwords from one IP lock it out on every node, the right password too; another IP logs in", async () => {
    // three failures, spread over both nodes (the count lives in the database)
    expect(await login(nodes[0]!, "127.0.0.7", "wrong")).toEqual([expect.stringMatching(/^535 5\.7\.8/)]);
    expect(await login(nodes[1]!, "127.0.0.7", "wrong")).toEqual([expect.stringMatching(/^535 5\.7\.8/)]);
    expect(await login(nodes[0]!, "127.0.0.7", "wrong")).toEqual([expect.stringMatching(/^535 5\.7\.8/)]);
    for (const node of nodes) {
      expect(await login(node, "127.0.0.7", PASSWORD)).toEqual([
        expect.stringMatching(/^454 4\.7\.0 .*too many failed logins/),
      ]);
    }
    expect(await login(nodes[1]!, "127.0.0.8", PASSWORD)).toEqual([expect.stringMatching(/^235 2\.7\.0/)]);
    const metrics = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^postern_limit_refusals_total\{limit="auth-lockout"\} 1$/m);
  }, 30000);

  test("a login verified before holds only for the password stored now: after user passwd the old one gets 535, after user rm the new one too", async () => {
    const carol = (password: string) =>
      smtplibSession({
        port: nodes[0]!.smtpPorts.submissions,
        tls: true,
        source: "127.0.0.9",
        user: "carol@example.test",
        password,
      });
    expect(
      (await runCli(["user", "add", "carol@example.test", "--password-stdin"], env, "first-password\n")).code,
    ).toBe(0);
    for (let i = 0; i < 2; i++)
      expect(await carol("first-password")).toEqual([expect.stringMatching(/^235 2\.7\.0/)]);
    expect(
      (await runCli(["user", "passwd", "carol@example.test", "--password-stdin"], env, "second-password\n"))
        .code,
    ).toBe(0);
    expect(await carol("first-password")).toEqual([expect.stringMatching(/^535 5\.7\.8/)]);
    expect(await carol("second-password")).toEqual([expect.stringMatching(/^235 2\.7\.0/)]);
    expect((await runCli(["user", "rm", "carol@example.test"], env)).code).toBe(0);
    expect(await carol("second-password")).toEqual([expect.stringMatching(/^535 5\.7\.8/)]);
  }, 30000);

  test("port 25: over POSTERN_INBOUND_PER_MINUTE messages from one IP → 451 4.7.1; another IP goes on", async () => {
    const mails = (source: string, n: number) =>
      smtplibSession({ port: nodes[0]!.smtpPorts.smtp, source, mails: n, from: "someone@remote.test" });
    const replies = await mails("127.0.0.9", 6);
    expect(replies.map((r) => r.slice(0, 9))).toEqual([
      "250 2.1.0",
      "250 2.1.0",
      "250 2.1.0",
      "250 2.1.0",
      "451 4.7.1",
      "451 4.7.1",
    ]);
    expect(replies[4]).toContain("too many messages from your address");
    expect((await mails("127.0.0.10", 1))[0]).toStartWith("250 2.1.0");
  });

  test("port 25: a client a DNSBL zone lists gets 554 5.7.1 at MAIL naming the zone; an unlisted one goes on", async () => {
    const mail = (source: string) =>
      smtplibSession({ port: nodes[1]!.smtpPorts.smtp, source, mails: 1, from: "someone@remote.test" });
    expect(await mail("127.0.0.2")).toEqual(["554 5.7.1 Error: client 127.0.0.2 is listed by zone.test"]);
    expect((await mail("127.0.0.11"))[0]).toStartWith("250 2.1.0");
    // the second look-up of the listed address is the resolver's cached answer
    expect(await mail("127.0.0.2")).toEqual(["554 5.7.1 Error: client 127.0.0.2 is listed by zone.test"]);
    expect(dns.count("2.0.0.127.zone.test", "A")).toBe(1);
    const metrics = await (await fetch(`http://127.0.0.1:${nodes[1]!.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^postern_limit_refusals_total\{limit="dnsbl"\} 2$/m);
    expect(metrics).toMatch(/^postern_dnsbl_checks_total\{result="clear"\} 1$/m);
  });

  test("send quotas: the recipient past a user's limit gets 451 4.7.1 (swaks, over two nodes); a key's /api/send past its limit 429", async () => {
    const submit = (node: RunningServer, to: string[]) =>
      swaks({
        port: node.smtpPorts.submissions,
        from: "bob@example.test",
        to: to.join(","),
        extra: ["--tlsc", "--auth", "PLAIN", "--auth-user", "bob@example.test", "--auth-password", PASSWORD],
      });
    expect(await submit(nodes[0]!, ["r1@remote.test", "r2@remote.test"])).toMatch(
      /250 2\.0\.0 Ok: queued as/,
    );
    const third = await submit(nodes[1]!, ["r3@remote.test", "r4@remote.test"]);
    expect(third).toContain("RCPT TO:<r3@remote.test>\n<~  250 2.1.5");
    expect(third).toMatch(
      /RCPT TO:<r4@remote\.test>\n<~\* 451 4\.7\.1 Error: send quota of 3 recipients per hour reached; try again after \d\d:00 UTC/,
    );
    expect(third).toMatch(/250 2\.0\.0 Ok: queued as/); // r3 still goes

    const send = (to: string[]) =>
      fetch(`http://127.0.0.1:${nodes[1]!.httpPort}/api/send`, {
        method: "POST",
        headers: { authorization: `Bearer ${shopKey}`, "content-type": "application/json" },
        body: JSON.stringify({ from: "shop@example.test", to, subject: "s", text: "t" }),
      });
    expect((await send(["a@remote.test", "b@remote.test"])).status).toBe(202);
    const over = await send(["c@remote.test"]);
    expect(over.status).toBe(429);
    const wait = Number(over.headers.get("retry-after"));
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(3600);
    expect(await over.json()).toEqual({
      error: "to: send quota of 2 recipients per hour of key shop reached",
      field: "to",
    });
  }, 30000);
});
