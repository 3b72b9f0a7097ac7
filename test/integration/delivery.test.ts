// Delivery end to end: a real server (in-process) on PostgreSQL, mail submitted over SMTP, a DNS
// server on loopback whose MX records point at the suite's SMTP sink, and DSNs read back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import PostalMime from "postal-mime";
import postgres from "postgres";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { type PeerMessage, SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";
import { SmtpClient } from "../helpers/smtp-client.ts";
import { swaks } from "../helpers/swaks.ts";

const USER = "u@example.test";
const PASSWORD = "pw";

describe.skipIf(!havePostgres)("delivery", () => {
  let dns: DnsTestServer;
  let sink: SmtpPeer;
  let server: RunningServer;
  let sql: postgres.Sql;
  let databaseUrl: string;
  /** Replies the sink gives per recipient local part, and how often it has seen each. */
  const seen = new Map<string, number>();

  beforeAll(async () => {
    sink = await SmtpPeer.start({
      starttls: true,
      rcptReply: (address) => {
        const local = address.slice(0, address.indexOf("@"));
        const n = (seen.get(local) ?? 0) + 1;
        seen.set(local, n);
        if (local.startsWith("reject")) return "550 5.1.1 no such user here";
        if (local.startsWith("always-temp")) return "451 4.3.0 try again later";
        if (local.startsWith("temp-once") && n === 1) return "451 4.3.0 try again later";
        return undefined;
      },
    });
    dns = await startDnsServer({
      // mx1 is preferred but nothing listens on 127.0.0.2: delivery must fall back to mx2.
      "remote.test": {
        MX: [
          { exchange: "mx1.remote.test", priority: 10 },
          { exchange: "mx2.remote.test", priority: 20 },
        ],
      },
      "mx1.remote.test": { A: ["127.0.0.2"] },
      "mx2.remote.test": { A: ["127.0.0.1"] },
      "implicit.test": { A: ["127.0.0.1"] },
      "nullmx.test": { MX: [{ exchange: ".", priority: 0 }] },
      "sender.test": { A: ["127.0.0.1"], TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
    });
    const url = await freshDatabaseUrl();
    databaseUrl = url;
    const env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test" });
    const run = async (...args: string[]) => expect((await runCli(args, env, `${PASSWORD}\n`)).code).toBe(0);
    await run("domain", "add", "example.test");
    await run("route", "add", "*@example.test", "mailbox");
    await run("route", "add", "inner@example.test", `relay:127.0.0.1:${sink.port}`);
    await run("route", "add", "fwd@example.test", "forward:friend@remote.test");
    await run("route", "add", "fwd-null@example.test", "forward:x@nullmx.test");
    await run("user", "add", USER, "--password-stdin");
    sql = postgres(url, { max: 2, onnotice: () => {} });
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: "mx.example.test",
      POSTERN_LOG_LEVEL: process.env.DBG ? "info" : "error",
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_DNS_CHECKS: "on",
      POSTERN_OUTBOUND_PORT: String(sink.port),
      // The zone's MX hosts are on loopback.
      POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
      POSTERN_RETRY_BASE_SECONDS: "1",
      POSTERN_RETRY_MAX_SECONDS: "1",
      POSTERN_QUEUE_LIFETIME_SECONDS: "5",
      POSTERN_DELAY_WARNING_SECONDS: "1",
    });
  });
  afterAll(async () => {
    await server?.stop();
    await sql?.end();
    await sink?.stop();
    await dns?.close();
  });

  /** Submits over implicit TLS with AUTH; recipients may carry RCPT parameters. Returns the queue id. */
  async function submit(rcpts: string[], subject: string, mailParams = ""): Promise<string> {
    const c = await SmtpClient.connect(server.smtpPorts.submissions, { tls: true });
    try {
      await c.readReply();
      await c.command("EHLO client.test");
      const auth = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");
      expect((await c.command(`AUTH PLAIN ${auth}`)).code).toBe(235);
      expect((await c.command(`MAIL FROM:<${USER}>${mailParams}`)).code).toBe(250);
      for (const r of rcpts) expect((await c.command(`RCPT TO:${r}`)).code).toBe(250);
      expect((await c.command("DATA")).code).toBe(354);
      const done = await c.command(
        `From: ${USER}\r\nTo: someone\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n.`,
      );
      const id = /queued as (\S+)/.exec(done.lines.join(" "))?.[1];
      expect(id).toBeDefined();
      return id!;
    } finally {
      await c.quit();
    }
  }

  const sinkMessage = (subject: string) =>
    sink.messages.find((m) => new TextDecoder().decode(m.data).includes(`Subject: ${subject}\r\n`));

  /** DSNs kept in u@example.test's mailbox, about message `id`, parsed. */
  async function dsnsAbout(id: string) {
    const rows = await sql`
      select m.raw from messages m join deliveries d on d.message_id = m.id
      where m.direction = 'dsn' and d.rcpt = ${USER} order by m.received_at`;
    const parsed = await Promise.all(rows.map((r) => PostalMime.parse(new Uint8Array(r.raw))));
    return parsed.filter((p) => p.attachments.some((a) => contentText(a.content).includes(id)));
  }

  function contentText(content: string | ArrayBuffer | Uint8Array): string {
    return typeof content === "string" ? content : new TextDecoder().decode(content);
  }

  function deliveryStatus(dsn: Awaited<ReturnType<typeof PostalMime.parse>>): string {
    const part = dsn.attachments.find((a) => a.mimeType === "message/delivery-status");
    expect(part).toBeDefined();
    return contentText(part!.content);
  }

  test("delivered once, to the MX that answers, over STARTTLS; the attempt names the host", async () => {
    const id = await submit(["<a@remote.test>"], "to remote");
    const m = await waitFor("the message at the sink", async () => sinkMessage("to remote"));
    expect(m.recipients).toEqual(["a@remote.test"]);
    expect(m.mailFrom).toBe(USER);
    expect(m.tls).toBe(true);
    const text = new TextDecoder().decode(m.data);
    expect(text).toContain("DKIM-Signature: v=1; a=rsa-sha256;");
    const [attempt] = await waitFor("the attempt row", async () => {
      const rows =
        await sql`select a.host, a.outcome, a.reply from attempts a join deliveries d on d.id = a.delivery_id where d.message_id = ${id}`;
      return rows.length > 0 ? rows : undefined;
    });
    expect(attempt).toMatchObject({ host: "mx2.remote.test", outcome: "delivered" });
    await Bun.sleep(300);
    expect(
      sink.messages.filter(
        (x) => x === m || (x.data && new TextDecoder().decode(x.data).includes("Subject: to remote\r\n")),
      ),
    ).toHaveLength(1);
  });

  test("no MX: the domain's own address (implicit MX)", async () => {
    await submit(["<b@implicit.test>"], "implicit mx");
    const m = await waitFor("implicit MX delivery", async () => sinkMessage("implicit mx"));
    expect(m.recipients).toEqual(["b@implicit.test"]);
  });

  test("a 5xx bounces at once: a DSN to the sender, checked field by field", async () => {
    const id = await submit(
      ["<reject-me@remote.test> ORCPT=rfc822;Reject-Me+40remote.test", "<ok-too@remote.test>"],
      "one bounces",
      " RET=HDRS ENVID=env-123",
    );
    const [dsn] = await waitFor("the DSN", async () => {
      const d = await dsnsAbout(id);
      return d.length > 0 ? d : undefined;
    });
    expect(dsn!.from?.address).toBe("MAILER-DAEMON@mx.example.test");
    expect(dsn!.headers.find((h) => h.key === "content-type")?.value).toContain(
      "report-type=delivery-status",
    );
    const status = deliveryStatus(dsn!);
    expect(status).toContain("Reporting-MTA: dns; mx.example.test");
    expect(status).toContain("Original-Envelope-Id: env-123");
    expect(status).toContain(`X-Postern-Queue-ID: ${id}`);
    expect(status).toMatch(/Arrival-Date: \w{3}, /);
    expect(status).toContain("Final-Recipient: rfc822; reject-me@remote.test");
    expect(status).toContain("Original-Recipient: rfc822;Reject-Me@remote.test");
    expect(status).toContain("Action: failed");
    expect(status).toContain("Status: 5.1.1");
    expect(status).toContain("Remote-MTA: dns; mx2.remote.test");
    expect(status).toContain("Diagnostic-Code: smtp; 550 5.1.1 no such user here");
    expect(status).not.toContain("ok-too@remote.test"); // delivered, so not in the failure DSN
    // RET=HDRS: the headers of the original come back, not its body.
    expect(dsn!.attachments.some((a) => a.mimeType === "text/rfc822-headers")).toBe(true);
    // The events: a hard bounce and a delivery, over TLS, naming the MX.
    const events = await sql`
      select type, rcpt, mx, reply_code, reply_enhanced, class, tls, attempt from events
      where message_id = ${id} and type <> 'accepted' order by id`;
    expect(events.map((e) => [e.type, e.rcpt, e.class])).toEqual(
      expect.arrayContaining([
        ["bounced", "reject-me@remote.test", "hard"],
        ["delivered", "ok-too@remote.test", null],
      ]),
    );
    expect(events.find((e) => e.type === "bounced")).toMatchObject({
      mx: "mx2.remote.test",
      reply_code: 550,
      reply_enhanced: "5.1.1",
      tls: true,
      attempt: 1,
    });
  }, 30000);

  test("a hard bounce suppresses the address for the sending domain: refused at RCPT until suppression rm", async () => {
    const id = await submit(["<reject-later@remote.test>"], "to be suppressed");
    await waitFor("the suppression", async () => {
      const [row] = await sql`select * from suppressions where address = 'reject-later@remote.test'`;
      return row;
    });
    const [row] =
      await sql`select domain, reason, code, message_id from suppressions where address = 'reject-later@remote.test'`;
    expect(row).toEqual({
      domain: "example.test",
      reason: "hard bounce",
      code: "550 5.1.1 no such user here",
      message_id: id,
    });
    const rcptOf = async () => {
      const c = await SmtpClient.connect(server.smtpPorts.submissions, { tls: true });
      try {
        await c.readReply();
        await c.command("EHLO client.test");
        await c.command(`AUTH PLAIN ${Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64")}`);
        await c.command(`MAIL FROM:<${USER}>`);
        const r = await c.command("RCPT TO:<reject-later@remote.test>");
        return `${r.code} ${r.lines.join(" ")}`;
      } finally {
        await c.quit();
      }
    };
    const seenBefore = seen.get("reject-later");
    expect(await rcptOf()).toMatch(
      /^550 5\.7\.1 Error: <reject-later@remote\.test>: recipient is suppressed \(hard bounce, since \d{4}-\d\d-\d\d\)$/,
    );
    expect(seen.get("reject-later")).toBe(seenBefore); // the destination was not asked again
    const [refusal] =
      await sql`select type, message_id, reply_code, reply_text from events where type = 'suppressed' and rcpt = 'reject-later@remote.test'`;
    expect(refusal).toMatchObject({ message_id: null, reply_code: 550 });
    expect(refusal!.reply_text).toContain("recipient is suppressed (hard bounce");
    const env = cliEnv({ DATABASE_URL: databaseUrl });
    const ls = await runCli(["suppression", "ls", "--domain", "example.test"], env);
    expect(ls.stdout).toContain("example.test\treject-later@remote.test\thard bounce\t");
    expect((await runCli(["suppression", "rm", "reject-later@remote.test"], env)).code).toBe(0);
    expect(await rcptOf()).toStartWith("250");
    expect((await runCli(["suppression", "rm", "reject-later@remote.test"], env)).code).toBe(1);
  }, 30000);

  test("a delivery report mailed back to port 25 (swaks) becomes a bounced event of the right message, and suppresses", async () => {
    const id = await submit(
      ["<took-it-then-bounced@remote.test>", "<other-rcpt@remote.test>"],
      "bounces later",
    );
    const sent = await waitFor("the sink's copy", async () => sinkMessage("bounces later"));
    // With no ENVID of the submitter's, ours went out: the report names it.
    expect(sent.mailParams.ENVID).toBe(id);
    const report = (envid: string | undefined, rcpt: string, returnedHeaders: string[] = []) =>
      [
        "From: MAILER-DAEMON@remote.test",
        `To: ${USER}`,
        "Subject: Undelivered Mail Returned to Sender",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        "",
        "--r",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx2.remote.test",
        ...(envid ? [`Original-Envelope-Id: ${envid}`] : []),
        "",
        `Final-Recipient: rfc822; ${rcpt}`,
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; inner.remote.test",
        `Diagnostic-Code: smtp; 550 5.1.1 <${rcpt}>: User unknown in local recipient table`,
        "",
        ...(returnedHeaders.length > 0
          ? ["--r", "Content-Type: text/rfc822-headers", "", ...returnedHeaders, ""]
          : []),
        "--r--",
        "",
      ].join("\r\n");
    const mailBack = async (data: string) =>
      expect(
        await swaks({
          port: server.smtpPorts.smtp,
          from: "<>",
          to: USER,
          data,
        }),
      ).toContain("250 2.0.0 Ok: queued as");
    // A report naming someone the message was never sent to tells nothing.
    await mailBack(report(id, "stranger@remote.test"));
    await mailBack(report(id, "took-it-then-bounced@remote.test"));
    const [event] = await waitFor("the bounced event", async () => {
      const rows = await sql`select * from events where message_id = ${id} and type = 'bounced'`;
      return rows.length > 0 ? rows : undefined;
    });
    expect(event).toMatchObject({
      rcpt: "took-it-then-bounced@remote.test",
      class: "hard",
      reply_code: 550,
      reply_enhanced: "5.1.1",
      mx: "inner.remote.test",
      mail_from: USER,
    });
    const strangers =
      await sql`select * from events where message_id = ${id} and rcpt = 'stranger@remote.test'`;
    expect(strangers.length).toBe(0);
    const [suppression] =
      await sql`select domain, reason, message_id from suppressions where address = 'took-it-then-bounced@remote.test'`;
    expect(suppression).toEqual({
      domain: "example.test",
      reason: "hard bounce (delivery report)",
      message_id: id,
    });
    // The report is mail too: it is in the sender's mailbox.
    const kept = await sql`
      select count(*)::int as n from messages m join deliveries d on d.message_id = m.id
      where m.direction = 'inbound' and d.rcpt = ${USER} and m.subject = 'Undelivered Mail Returned to Sender'`;
    expect(kept[0]!.n).toBe(2);

    // A report without the ENVID (a hop that dropped it) is matched by the returned Message-ID.
    const [sentRow] = await sql`select message_id_header from messages where id = ${id}`;
    await mailBack(
      report(undefined, "other-rcpt@remote.test", [
        `From: ${USER}`,
        `Message-ID: ${sentRow!.message_id_header}`,
      ]),
    );
    await waitFor("the bounced event by Message-ID", async () => {
      const rows =
        await sql`select 1 from events where message_id = ${id} and rcpt = 'other-rcpt@remote.test' and type = 'bounced'`;
      return rows.length > 0 ? true : undefined;
    });
  }, 30000);

  test("postern send leaves suppressed recipients out, and refuses when all are", async () => {
    const env = cliEnv({ DATABASE_URL: databaseUrl });
    expect(
      (await runCli(["suppression", "add", "gone@remote.test", "--domain", "example.test"], env)).code,
    ).toBe(0);
    const message = `From: ${USER}\nSubject: cli send\n\nhi\n`;
    const some = await runCli(
      ["send", "--from", USER, "--to", "gone@remote.test", "--to", "here@remote.test"],
      env,
      message,
    );
    expect(some.code).toBe(0);
    expect(some.stdout).toMatch(/^queued as \S+\nnot sent to gone@remote\.test: suppressed\n$/);
    const none = await runCli(["send", "--from", USER, "--to", "gone@remote.test"], env, message);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("every recipient is suppressed for example.test: gone@remote.test");
  });

  test("NOTIFY=NEVER: a bounce, and no DSN", async () => {
    const id = await submit(["<reject-quiet@remote.test> NOTIFY=NEVER"], "quiet bounce");
    await waitFor("the bounce", async () => {
      const [d] = await sql`select status from deliveries where message_id = ${id}`;
      return d?.status === "bounced" ? true : undefined;
    });
    await Bun.sleep(500);
    expect(await dsnsAbout(id)).toHaveLength(0);
  });

  test("a 4xx is retried and then delivered; one that never clears gets a delay warning, then expires into a DSN", async () => {
    const retried = await submit(["<temp-once@remote.test>"], "temp once");
    const expiring = await submit(["<always-temp@remote.test>"], "never clears");
    const row = await waitFor("the retried delivery", async () => {
      const [r] = await sql`select status, attempts from deliveries where message_id = ${retried}`;
      return r?.status === "delivered" ? r : undefined;
    });
    expect(row).toMatchObject({ status: "delivered", attempts: 2 });
    expect(sinkMessage("temp once")).toBeDefined();

    const dsns = await waitFor(
      "delay and failure DSNs",
      async () => {
        const d = await dsnsAbout(expiring);
        return d.some((x) => deliveryStatus(x).includes("Action: failed")) ? d : undefined;
      },
      15000,
    );
    const actions = dsns.map((d) => /Action: (\w+)/.exec(deliveryStatus(d))?.[1]);
    expect(actions).toEqual(["delayed", "failed"]);
    expect(deliveryStatus(dsns[1]!)).toContain("Status: 5.3.0"); // the 451 4.3.0, made final
    const tries =
      await sql`select count(*)::int as n from attempts a join deliveries d on d.id = a.delivery_id where d.message_id = ${expiring}`;
    expect(tries[0]!.n).toBeGreaterThanOrEqual(2);
    const kinds = await sql`select type, class from events where message_id = ${expiring} order by id`;
    expect(kinds[0]).toMatchObject({ type: "accepted" });
    expect(kinds.at(-1)).toMatchObject({ type: "expired", class: "soft" });
    expect(kinds.slice(1, -1).every((e) => e.type === "deferred" && e.class === "soft")).toBe(true);
  }, 30000);

  test("messages for one destination share a connection", async () => {
    await waitFor("a quiet queue", async () => {
      const [r] =
        await sql`select count(*)::int as n from deliveries where status in ('queued') and target = 'mx'`;
      return r!.n === 0 ? true : undefined;
    });
    const before = sink.connections.length;
    const c = await SmtpClient.connect(server.smtpPorts.submissions, { tls: true });
    await c.readReply();
    await c.command("EHLO client.test");
    await c.command(`AUTH PLAIN ${Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64")}`);
    // Ten messages committed in one burst; the scheduler wakes once or a few times.
    for (let i = 0; i < 10; i++) {
      await c.command(`MAIL FROM:<${USER}>`);
      await c.command(`RCPT TO:<batch${i}@remote.test>`);
      await c.command("DATA");
      await c.command(`From: ${USER}\r\nSubject: batch ${i}\r\n\r\nx\r\n.`);
    }
    await c.quit();
    await waitFor("ten batch messages", async () =>
      sink.messages.filter((m) => m.recipients[0]?.startsWith("batch")).length === 10 ? true : undefined,
    );
    const used = sink.connections.length - before;
    expect(used).toBeLessThan(10);
  });

  test("relay:lmtp:HOST:PORT speaks LMTP to an inner store", async () => {
    const lmtp = await SmtpPeer.start({ lmtp: true });
    try {
      const env = cliEnv({ DATABASE_URL: databaseUrl });
      const added = await runCli(
        ["route", "add", "store@example.test", `relay:lmtp:127.0.0.1:${lmtp.port}`],
        env,
      );
      expect(added.code).toBe(0);
      await Bun.sleep(2100); // the directory's cache
      const c = await SmtpClient.connect(server.smtpPorts.smtp);
      await c.readReply();
      await c.command("EHLO sender.test");
      await c.command("MAIL FROM:<s@sender.test>");
      expect((await c.command("RCPT TO:<store@example.test>")).code).toBe(250);
      await c.command("DATA");
      expect((await c.command("From: s@sender.test\r\nSubject: to the store\r\n\r\nhi\r\n.")).code).toBe(250);
      await c.quit();
      const deadline = Date.now() + 10000;
      while (lmtp.messages.length === 0 && Date.now() < deadline) await Bun.sleep(50);
      // the peer speaks LMTP only: it would have refused EHLO and HELO
      expect(lmtp.messages[0]?.recipients).toEqual(["store@example.test"]);
    } finally {
      await lmtp.stop();
    }
  });

  test("relay:HOST:PORT routes inbound mail to an inner server", async () => {
    const c = await SmtpClient.connect(server.smtpPorts.smtp);
    await c.readReply();
    await c.command("EHLO sender.test");
    expect((await c.command("MAIL FROM:<s@sender.test>")).code).toBe(250);
    expect((await c.command("RCPT TO:<inner@example.test>")).code).toBe(250);
    await c.command("DATA");
    expect(
      (await c.command("From: s@sender.test\r\nSubject: for the inner server\r\n\r\nhi\r\n.")).code,
    ).toBe(250);
    await c.quit();
    const m = await waitFor("relayed message", async () => sinkMessage("for the inner server"));
    expect(m.recipients).toEqual(["inner@example.test"]);
    expect(m.mailFrom).toBe("s@sender.test");
  });

  test("a CR smuggled into ORCPT gets 501 5.5.4 and never reaches the inner server", async () => {
    const c = await SmtpClient.connect(server.smtpPorts.smtp);
    await c.readReply();
    await c.command("EHLO sender.test");
    expect((await c.command("MAIL FROM:<s@sender.test>")).code).toBe(250);
    const evil = await c.command("RCPT TO:<inner@example.test> ORCPT=rfc822\rQUIT\t<>;smuggled+2Bb");
    expect(`${evil.code} ${evil.lines[0]}`).toStartWith("501 5.5.4");
    const fine = await c.command("RCPT TO:<inner@example.test> ORCPT=rfc822;inner@example.test");
    expect(fine.code).toBe(250);
    await c.command("DATA");
    expect((await c.command("From: s@sender.test\r\nSubject: orcpt check\r\n\r\nhi\r\n.")).code).toBe(250);
    await c.quit();
    const m = await waitFor("relayed message", async () => sinkMessage("orcpt check"));
    expect(m.rcptParams).toEqual([{ ORCPT: "rfc822;inner@example.test" }]);
    const seen = sink.received.flatMap((r) => [
      ...r.recipients,
      ...r.rcptParams.map((p) => JSON.stringify(p)),
    ]);
    expect(seen.filter((text) => /smuggled|\\t|\\r|\t|\r/.test(text))).toEqual([]);
  });

  test("forward:ADDRESS re-sends with an SRS sender and an ARC seal", async () => {
    const c = await SmtpClient.connect(server.smtpPorts.smtp);
    await c.readReply();
    await c.command("EHLO sender.test");
    expect((await c.command("MAIL FROM:<s@sender.test>")).code).toBe(250);
    expect((await c.command("RCPT TO:<fwd@example.test>")).code).toBe(250);
    await c.command("DATA");
    expect((await c.command("From: s@sender.test\r\nSubject: forward me\r\n\r\nhi\r\n.")).code).toBe(250);
    await c.quit();
    const m: PeerMessage = await waitFor("forwarded message", async () => sinkMessage("forward me"));
    expect(m.recipients).toEqual(["friend@remote.test"]);
    expect(m.mailFrom).toMatch(/^SRS0=[^=]{4}=[A-Z2-7]{2}=sender\.test=s@example\.test$/);
    const text = new TextDecoder().decode(m.data);
    expect(text).toStartWith("ARC-Seal: i=1;");
    expect(text).toContain("ARC-Message-Signature: i=1;");
    expect(text).toContain("ARC-Authentication-Results: i=1; mx.example.test;");
  });

  test("a null MX bounces at once with 5.1.10, and the DSN goes back to the sender's MX", async () => {
    const c = await SmtpClient.connect(server.smtpPorts.smtp);
    await c.readReply();
    await c.command("EHLO sender.test");
    await c.command("MAIL FROM:<s@sender.test>");
    expect((await c.command("RCPT TO:<fwd-null@example.test>")).code).toBe(250);
    await c.command("DATA");
    expect((await c.command("From: s@sender.test\r\nSubject: to a null mx\r\n\r\nhi\r\n.")).code).toBe(250);
    await c.quit();
    const dsn = await waitFor("the DSN at the sender's MX", async () =>
      sink.messages.find((m) => m.mailFrom === "" && m.recipients[0] === "s@sender.test"),
    );
    const parsed = await PostalMime.parse(dsn.data);
    expect(deliveryStatus(parsed)).toContain("Status: 5.1.10");
  });
});
