// A slow DNS server delays only the sessions that wait for it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { SmtpClient } from "../helpers/smtp-client.ts";

describe.skipIf(!havePostgres)("a slow DNS server", () => {
  let dns: DnsTestServer;
  let server: RunningServer;

  beforeAll(async () => {
    dns = await startDnsServer({
      "warm.test": { A: ["192.0.2.1"], TXT: ["v=spf1 -all"] },
      "cold.test": { A: ["192.0.2.1"], TXT: ["v=spf1 -all"] },
    });
    const url = await freshDatabaseUrl();
    const env = cliEnv({ DATABASE_URL: url });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_DNS_CHECKS: "on",
    });
  });
  afterAll(async () => {
    await server?.stop();
    await dns?.close();
  });

  async function transaction(c: SmtpClient, from: string): Promise<string> {
    await c.readReply();
    await c.command("EHLO client.test");
    expect((await c.command(`MAIL FROM:<${from}>`, 15000)).code).toBe(250);
    expect((await c.command("RCPT TO:<alice@example.test>")).code).toBe(250);
    expect((await c.command("DATA")).code).toBe(354);
    const done = await c.command(`From: ${from}\r\nSubject: s\r\n\r\nbody\r\n.`, 15000);
    return done.lines.join(" ");
  }

  test("while one session waits on DNS, another whose answers are cached completes", async () => {
    // Warm the cache for warm.test with a whole transaction, then make the server slow.
    const warmUp = await SmtpClient.connect(server.smtpPorts.smtp);
    expect(await transaction(warmUp, "a@warm.test")).toContain("queued as");
    await warmUp.quit();
    dns.behaviour.delayMs = 1500;

    const order: string[] = [];
    const slow = await SmtpClient.connect(server.smtpPorts.smtp);
    const fast = await SmtpClient.connect(server.smtpPorts.smtp);
    const slowDone = transaction(slow, "b@cold.test").then((r) => order.push(`cold ${r.includes("queued")}`));
    await Bun.sleep(50); // the cold session is now waiting for its MAIL FROM look-up
    await transaction(fast, "c@warm.test").then((r) => order.push(`warm ${r.includes("queued")}`));
    await slowDone;
    expect(order).toEqual(["warm true", "cold true"]);
    await slow.quit();
    await fast.quit();
  }, 30000);
});
