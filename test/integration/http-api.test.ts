import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";

const TOKEN = "test-admin-token-0123456789";

/** Sends one message with swaks, a real SMTP client; returns its transcript. */
async function swaks(port: number, to: string, subject: string): Promise<string> {
  const proc = Bun.spawn(
    [
      "swaks",
      "--server",
      `127.0.0.1:${port}`,
      "--from",
      "sender@remote.test",
      "--to",
      to,
      "--header",
      `Subject: ${subject}`,
      "--header",
      "From: Sender Name <author@remote.test>",
      "--body",
      `body of ${subject}`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return out;
}

describe.skipIf(!havePostgres)("HTTP API on PostgreSQL", () => {
  let server: RunningServer;
  let base: string;
  const auth = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    const url = await freshDatabaseUrl();
    const env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test" });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: "mx.example.test",
      POSTERN_ADMIN_TOKEN: TOKEN,
    });
    base = `http://127.0.0.1:${server.httpPort}`;
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("/healthz is open, /api needs the right bearer token", async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const path = `${base}/api/mailboxes/a@example.test/messages`;
    expect((await fetch(path)).status).toBe(401);
    expect((await fetch(path, { headers: { authorization: "Bearer wrong-token-wrong-token" } })).status).toBe(
      401,
    );
    expect((await fetch(path, { headers: { authorization: TOKEN } })).status).toBe(401);
    expect((await fetch(path, { headers: auth })).status).toBe(200);
    expect((await fetch(`${base}/api/nothing`, { headers: auth })).status).toBe(404);
    expect((await fetch(path, { method: "POST", headers: auth })).status).toBe(405);
  });

  test("mail received on port 25 is readable in its mailbox, newest first, page by page", async () => {
    for (const subject of ["first", "second", "third"]) {
      expect(await swaks(server.smtpPorts.smtp, "alice@example.test", subject)).toContain(
        "250 2.0.0 Ok: queued as",
      );
    }
    expect(await swaks(server.smtpPorts.smtp, "Bob@Example.TEST", "for bob")).toContain("250 2.0.0");
    // The address as typed at RCPT does not matter: bob's mailbox has it.
    const bob = await fetch(`${base}/api/mailboxes/bob@example.test/messages`, { headers: auth });
    expect(((await bob.json()) as { subject: string }[]).map((m) => m.subject)).toEqual(["for bob"]);

    const res = await fetch(`${base}/api/mailboxes/Alice@Example.test/messages?limit=2`, { headers: auth });
    expect(res.status).toBe(200);
    const page1 = (await res.json()) as Record<string, unknown>[];
    expect(page1.map((m) => m.subject)).toEqual(["third", "second"]);
    const m = page1[0]!;
    expect(m.from).toBe("author@remote.test"); // the header From, as a mail client shows it
    expect(m.mailFrom).toBe("sender@remote.test"); // the envelope
    expect(m.to).toEqual(["alice@example.test"]);
    expect(Date.parse(String(m.receivedAt))).toBeGreaterThan(Date.now() - 60_000);
    expect(m).toHaveProperty("authResults");
    expect(String(m.raw)).toStartWith("Received: from ");
    expect(String(m.raw)).toContain("by mx.example.test (Postern) with ESMTP id");
    expect(String(m.raw)).toContain("\r\nSubject: third\r\n");
    expect(String(m.raw)).toContain("body of third");

    const next = res.headers.get("x-next-cursor");
    expect(next).toBeTruthy();
    const res2 = await fetch(`${base}/api/mailboxes/alice@example.test/messages?limit=2&cursor=${next}`, {
      headers: auth,
    });
    const page2 = (await res2.json()) as Record<string, unknown>[];
    expect(page2.map((x) => x.subject)).toEqual(["first"]);
    expect(res2.headers.get("x-next-cursor")).toBeNull();
  });

  test("a message that has looped past 50 Received headers is refused with 554 5.4.6", async () => {
    const hops = Array.from(
      { length: 51 },
      (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; x`,
    ).join("\r\n");
    const proc = Bun.spawn(
      [
        "swaks",
        "--server",
        `127.0.0.1:${server.smtpPorts.smtp}`,
        "--from",
        "s@remote.test",
        "--to",
        "loop@example.test",
        "--data",
        "-",
      ],
      { stdin: new TextEncoder().encode(`${hops}\r\nSubject: loop\r\n\r\nx\r\n`), stdout: "pipe" },
    );
    const out = await new Response(proc.stdout).text();
    expect(out).toContain("554 5.4.6");
  });

  test("bad query values are 400 with the field named", async () => {
    const bad = async (q: string) => {
      const r = await fetch(`${base}/api/mailboxes/alice@example.test/messages?${q}`, { headers: auth });
      return [r.status, ((await r.json()) as { error: string }).error] as const;
    };
    expect(await bad("limit=0")).toEqual([400, "limit: expected a whole number from 1 to 500"]);
    expect(await bad("limit=abc")).toEqual([400, "limit: expected a whole number from 1 to 500"]);
    expect((await bad("cursor=zzz"))[1]).toStartWith("cursor:");
    const r = await fetch(`${base}/api/mailboxes/not-an-address/messages`, { headers: auth });
    expect(r.status).toBe(400);
  });
});
