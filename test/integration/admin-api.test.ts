// The admin API and the queue CLI against real PostgreSQL, a loopback DNS server and the SMTP peer (smtp-server).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { dkimTxtValue } from "../../src/mail/dkim.ts";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { dkimpyVerify, haveDkimpy } from "../helpers/dkimpy.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";

const TOKEN = "admin-token-for-the-api-tests";
const MAX_BYTES = 200_000;

describe.skipIf(!havePostgres)("admin API", () => {
  let dns: DnsTestServer;
  let sink: SmtpPeer;
  let server: RunningServer;
  let sql: postgres.Sql;
  let env: Record<string, string>;
  let base: string;
  const auth = { authorization: `Bearer ${TOKEN}` };
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${base}${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) } });
  const post = (path: string, body: unknown) =>
    api(path, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });

  beforeAll(async () => {
    sink = await SmtpPeer.start({
      rcptReply: (address) => (address.startsWith("later") ? "451 4.3.0 not now" : undefined),
    });
    dns = await startDnsServer({ "remote.test": { A: ["127.0.0.1"] } });
    const url = await freshDatabaseUrl();
    env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test" });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    sql = postgres(url, { max: 2, onnotice: () => {} });
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: "mx.example.test",
      POSTERN_ADMIN_TOKEN: TOKEN,
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_DNS_CHECKS: "on",
      POSTERN_OUTBOUND_PORT: String(sink.port),
      // The zone's MX hosts are on loopback.
      POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
      POSTERN_RETRY_BASE_SECONDS: "600",
      POSTERN_RETRY_MAX_SECONDS: "600",
      POSTERN_MAX_MESSAGE_BYTES: String(MAX_BYTES),
    });
    base = `http://127.0.0.1:${server.httpPort}`;
  });
  afterAll(async () => {
    await server?.stop();
    await sql?.end();
    await sink?.stop();
    await dns?.close();
  });

  test("every /api route wants the bearer token", async () => {
    const routes: [string, string][] = [
      ["GET", "/api/queue"],
      ["GET", "/api/messages/0123456789ABCDEF"],
      ["POST", "/api/messages/0123456789ABCDEF/retry"],
      ["DELETE", "/api/messages/0123456789ABCDEF"],
      ["POST", "/api/send"],
      ["GET", "/api/mailboxes/a@example.test/messages"],
      ["GET", "/api/suppressions"],
      ["POST", "/api/suppressions"],
      ["DELETE", "/api/suppressions/a@example.test"],
    ];
    for (const [method, path] of routes) {
      expect((await fetch(`${base}${path}`, { method })).status).toBe(401);
      const wrong = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: "Bearer not-the-token-at-all" },
      });
      expect(wrong.status).toBe(401);
      expect(await wrong.json()).toEqual({ error: "missing or wrong bearer token" });
    }
    expect((await api("/api/queue")).status).toBe(200);
    expect((await api("/api/nope")).status).toBe(404);
    expect((await api("/api/queue", { method: "PUT" })).status).toBe(405);
  });

  test("bad bodies and parameters get 400 naming the field and the reason", async () => {
    const bad = async (body: unknown) => {
      const r = await post("/api/send", body);
      expect(r.status).toBe(400);
      return (await r.json()) as { error: string; field: string };
    };
    expect((await bad({ from: "a@example.test", subject: "s", text: "t" })).field).toBe("to");
    expect((await bad({ from: "a@example.test", to: [], subject: "s" })).field).toBe("to");
    expect(
      (await bad({ from: "a@example.test", to: ["b@remote.test"], subject: "s", extra: 1 })).error,
    ).toContain("extra");
    expect((await bad({ from: "not-an-address", to: ["b@remote.test"], raw: "x" })).field).toBe("from");
    expect(
      (await bad({ from: "a@other.test", to: ["b@remote.test"], raw: "From: a@other.test\r\n\r\nx" })).error,
    ).toBe("from: other.test is not a local domain");
    expect(
      (
        await bad({
          from: "a@example.test",
          to: ["b@remote.test"],
          subject: "s",
          headers: { "X-Bad": "a\r\nBcc: x" },
        })
      ).field,
    ).toBe("X-Bad");
    const notJson = await api("/api/send", { method: "POST", body: "{" });
    expect(await notJson.json()).toMatchObject({ field: "body" });
    expect((await api("/api/queue?status=lost")).status).toBe(400);
    expect((await api("/api/queue?limit=0")).status).toBe(400);
  });

  test("POST /api/send keeps SMTP's limits: size (413), line length and bare CR (400), body cap (413)", async () => {
    const raw = (body: string) => ({
      from: "a@example.test",
      to: ["box3@example.test"],
      raw: `From: a@example.test\r\nSubject: limits\r\n\r\n${body}`,
    });
    const refused = async (body: unknown, status: number) => {
      const r = await post("/api/send", body);
      expect(r.status).toBe(status);
      return (await r.json()) as { error: string; field: string };
    };
    const line = `${"z".repeat(98)}\r\n`;
    expect(await refused(raw(line.repeat(MAX_BYTES / 100 + 10)), 413)).toEqual({
      field: "raw",
      error: expect.stringMatching(/^raw: the message is \d+ octets; the limit is 200000 /),
    });
    expect(await refused(raw(`short\r\n${"w".repeat(999)}\r\n`), 400)).toEqual({
      field: "raw",
      error: "raw: line 5 is 999 octets long; the limit is 998 (RFC 5322 2.1.1)",
    });
    expect(await refused(raw("one\rQUIT\r\n"), 400)).toEqual({
      field: "raw",
      error: "raw: bare CR (without LF) in line 4",
    });
    // Composed mail too: a text that makes a message over the limit.
    const big = { from: "a@example.test", to: ["box3@example.test"], subject: "s", text: line.repeat(2100) };
    expect((await refused(big, 413)).field).toBe("message");
    // Over the body cap (the limit * 1.4 + 64 KiB): refused unread, so not even "not JSON".
    const huge = "{".repeat(Math.ceil(MAX_BYTES * 1.4) + 64 * 1024 + 1);
    const declared = await api("/api/send", { method: "POST", body: huge });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toMatchObject({ field: "body" });
    const streamed = await api("/api/send", {
      method: "POST",
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(huge));
          c.close();
        },
      }),
    });
    expect(streamed.status).toBe(413);
    // Lines ended by LF alone are read as CRLF; just under every limit goes through.
    const fits = await post("/api/send", {
      ...raw(""),
      raw: `From: a@example.test\nSubject: lf only\n\n${"y".repeat(998)}\n`,
    });
    expect(fits.status).toBe(202);
    const res = await api("/api/mailboxes/box3@example.test/messages");
    const kept = (await res.json()) as { subject: string; raw: string }[];
    expect(kept.map((m) => m.subject)).toEqual(["lf only"]);
    expect(kept[0]!.raw).toContain(`\r\n\r\n${"y".repeat(998)}\r\n`);
  });

  test.skipIf(!haveDkimpy)(
    "POST /api/send composes, signs and delivers; dkimpy verifies the signature",
    async () => {
      const r = await post("/api/send", {
        from: "news@example.test",
        to: ["reader@remote.test"],
        subject: "Grüße from the API",
        text: "plain",
        html: "<p>html</p>",
        headers: { "X-Campaign": "api-test" },
      });
      expect(r.status).toBe(202);
      const { id } = (await r.json()) as { id: string };
      const m = await waitFor("the sink", async () =>
        sink.messages.find((x) => x.recipients[0] === "reader@remote.test"),
      );
      expect(m.mailFrom).toBe("news@example.test");
      const [domain] = await sql`select dkim_rsa_key, dkim_ed25519_key from domains`;
      const records = {
        "postern-rsa._domainkey.example.test": dkimTxtValue(domain!.dkim_rsa_key),
        "postern-ed25519._domainkey.example.test": dkimTxtValue(domain!.dkim_ed25519_key),
      };
      expect(dkimpyVerify(m.data, records)).toEqual([true, true]);
      const text = new TextDecoder().decode(m.data);
      expect(text).toContain("X-Campaign: api-test");
      expect(text).toContain(`Received: by mx.example.test (Postern, via api) id ${id};`);
    },
  );

  test("a message's story: queue listing, detail with attempt history, retry, removal", async () => {
    const r = await post("/api/send", {
      from: "a@example.test",
      to: ["later@remote.test", "box@example.test"],
      raw: "From: a@example.test\nSubject: stuck\n\nbody\n",
    });
    expect(r.status).toBe(202);
    const { id } = (await r.json()) as { id: string };
    const detail = await waitFor("a deferred attempt", async () => {
      const d = (await (await api(`/api/messages/${id}`)).json()) as {
        recipients: { rcpt: string; status: string; history: unknown[] }[];
      };
      return d.recipients.some((x) => x.status === "deferred") ? d : undefined;
    });
    expect(detail).toMatchObject({ id, from: "a@example.test", subject: "stuck", direction: "outbound" });
    const later = detail.recipients.find((x) => x.rcpt === "later@remote.test")!;
    expect(later).toMatchObject({ status: "deferred", attempts: 1, target: "mx" });
    expect(later.history).toEqual([
      expect.objectContaining({ outcome: "deferred", host: "remote.test", reply: "451 4.3.0 not now" }),
    ]);
    expect(detail.recipients.find((x) => x.rcpt === "box@example.test")).toMatchObject({
      status: "delivered",
    });
    expect(JSON.stringify(detail)).not.toMatch(/BEGIN PRIVATE KEY|argon2/);

    const deferred = (await (await api("/api/queue?status=deferred")).json()) as {
      messageId: string;
      rcpt: string;
    }[];
    expect(deferred.map((e) => [e.messageId, e.rcpt])).toContainEqual([id, "later@remote.test"]);

    // The queue CLI tells the same story.
    const ls = await runCli(["queue", "ls", "--status", "deferred"], env);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`^${id}\\s+later@remote\\.test\\s+deferred\\s+1\\s+`, "m"));
    const show = await runCli(["queue", "show", id], env);
    expect(show.stdout).toContain("to <later@remote.test>  via mx  deferred  after 1 tries");
    expect(show.stdout).toContain("451 4.3.0 not now");
    const json = JSON.parse((await runCli(["queue", "ls", "--json"], env)).stdout) as { messageId: string }[];
    expect(json.some((e) => e.messageId === id)).toBe(true);

    // Retry now: the deferral (10 minutes away) is brought forward and tried again.
    const retried = await post(`/api/messages/${id}/retry`, {});
    expect(await retried.json()).toEqual({ id, retried: 1 });
    await waitFor("a second attempt", async () => {
      const [row] =
        await sql`select attempts from deliveries where message_id = ${id} and rcpt = 'later@remote.test'`;
      return row!.attempts >= 2 ? true : undefined;
    });
    // The events tell it too, in order, paged, filtered.
    const events = (await (await api(`/api/events?messageId=${id}`)).json()) as {
      id: number;
      type: string;
      rcpt: string;
      attempt: number;
      mx: string | null;
      reply: { code: number; enhanced: string; text: string } | null;
      class: string | null;
    }[];
    expect(events.slice(0, 4).map((e) => [e.type, e.rcpt])).toEqual([
      ["accepted", "later@remote.test"],
      ["accepted", "box@example.test"],
      ["delivered", "box@example.test"],
      ["deferred", "later@remote.test"],
    ]);
    expect(events[3]).toMatchObject({
      attempt: 1,
      mx: "remote.test",
      reply: { code: 451, enhanced: "4.3.0", text: "not now" },
      class: "soft",
    });
    const page = await api(`/api/events?messageId=${id}&limit=2&since=${events[0]!.id}`);
    expect(((await page.json()) as { type: string }[]).map((e) => e.type)).toEqual(["accepted", "delivered"]);
    expect(page.headers.get("x-next-since")).toBe(String(events[2]!.id));
    const deferrals = (await (await api(`/api/events?type=deferred&messageId=${id}`)).json()) as unknown[];
    expect(deferrals.length).toBeGreaterThanOrEqual(1);
    expect((await api("/api/events?type=exploded")).status).toBe(400);
    expect((await api("/api/events?since=-1")).status).toBe(400);

    const cliRetry = await runCli(["queue", "retry", id], env);
    expect(cliRetry).toMatchObject({ code: 0, stdout: `1 deliveries of ${id} due now\n` });

    const removed = await api(`/api/messages/${id}`, { method: "DELETE" });
    expect(await removed.json()).toEqual({ id, deleted: true });
    expect((await api(`/api/messages/${id}`)).status).toBe(404);
    expect((await api(`/api/messages/${id}`, { method: "DELETE" })).status).toBe(404);
    const gone = await runCli(["queue", "rm", id], env);
    expect(gone.code).toBe(1);
    expect(gone.stderr.trim()).toBe(`postern: no message ${id} in the queue`);
  });

  test("/api/suppressions lists, adds and lifts; /api/send leaves a suppressed address out with a suppressed event", async () => {
    const added = await post("/api/suppressions", { address: "Gone@Remote.test", domain: "example.test" });
    expect(added.status).toBe(201);
    expect(await added.json()).toEqual([
      {
        address: "gone@remote.test",
        domain: "example.test",
        reason: "added by hand",
        code: null,
        messageId: null,
        at: expect.stringMatching(/^\d{4}-/),
      },
    ]);
    expect((await post("/api/suppressions", { address: "x@remote.test", domain: "other.test" })).status).toBe(
      400,
    );
    expect((await post("/api/suppressions", { address: "not an address" })).status).toBe(400);
    const listed = (await (await api("/api/suppressions?domain=example.test")).json()) as {
      address: string;
    }[];
    expect(listed.map((s) => s.address)).toContain("gone@remote.test");

    const sent = await post("/api/send", {
      from: "app@example.test",
      to: ["gone@remote.test", "kept@remote.test"],
      subject: "s",
      text: "t",
    });
    expect(sent.status).toBe(202);
    const { suppressed } = (await sent.json()) as { suppressed: string[] };
    expect(suppressed).toEqual(["gone@remote.test"]);
    const events = (await (await api("/api/events?type=suppressed&limit=1000")).json()) as Record<
      string,
      unknown
    >[];
    expect(events.at(-1)).toMatchObject({
      type: "suppressed",
      messageId: null,
      mailFrom: "app@example.test",
      rcpt: "gone@remote.test",
      reply: {
        code: 550,
        enhanced: "5.7.1",
        text: expect.stringContaining("recipient is suppressed (added by hand"),
      },
    });
    const all = await post("/api/send", {
      from: "app@example.test",
      to: ["gone@remote.test"],
      subject: "s",
      text: "t",
    });
    expect(all.status).toBe(422);

    const lifted = await api("/api/suppressions/gone%40remote.test?domain=example.test", {
      method: "DELETE",
    });
    expect(await lifted.json()).toEqual({ address: "gone@remote.test", removed: ["example.test"] });
    expect((await api("/api/suppressions/gone%40remote.test", { method: "DELETE" })).status).toBe(404);
    const again = await post("/api/send", {
      from: "app@example.test",
      to: ["gone@remote.test"],
      subject: "s",
      text: "t",
    });
    expect(again.status).toBe(202);
  });

  test("postern send injects a message from standard input", async () => {
    const r = await runCli(
      ["send", "--from", "cli@example.test", "--to", "box2@example.test"],
      env,
      "From: cli@example.test\nSubject: from the cli\n\nhello\n",
    );
    expect(r.code).toBe(0);
    const id = /^queued as (\S+)$/m.exec(r.stdout)?.[1];
    expect(id).toBeDefined();
    const res = await api("/api/mailboxes/box2@example.test/messages");
    const [kept] = (await res.json()) as { id: string; subject: string; raw: string }[];
    expect(kept).toMatchObject({ id, subject: "from the cli" });
    expect(kept!.raw).toContain("\r\nhello\r\n");
    expect(kept!.raw).toMatch(/^DKIM-Signature: /);
    const bad = await runCli(["send", "--from", "cli@elsewhere.test", "--to", "x@example.test"], env, "x");
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe("postern: from: elsewhere.test is not a local domain");
    const long = await runCli(
      ["send", "--from", "cli@example.test", "--to", "box2@example.test"],
      env,
      `From: cli@example.test\n\n${"x".repeat(1200)}\n`,
    );
    expect(long.code).toBe(1);
    expect(long.stderr.trim()).toBe(
      "postern: message: line 3 is 1200 octets long; the limit is 998 (RFC 5322 2.1.1)",
    );
  });
});
