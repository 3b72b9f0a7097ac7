// Per-IP limits against a real client from chosen loopback addresses (Python's smtplib): the AUTH
// lockout (held in PostgreSQL, so across nodes) and the inbound message rate on port 25.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { smtplibSession } from "../helpers/smtplib.ts";

const PASSWORD = "right-password";

describe.skipIf(!havePostgres)("per-IP limits", () => {
  const nodes: RunningServer[] = [];

  beforeAll(async () => {
    const url = await freshDatabaseUrl();
    const env = cliEnv({ DATABASE_URL: url });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    expect(
      (await runCli(["user", "add", "alice@example.test", "--password-stdin"], env, `${PASSWORD}\n`)).code,
    ).toBe(0);
    for (let i = 0; i < 2; i++)
      nodes.push(
        await startTestServer({
          DATABASE_URL: url,
          POSTERN_AUTH_LOCKOUT_FAILURES: "3",
          POSTERN_INBOUND_PER_MINUTE: "4",
        }),
      );
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
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
});
