// The outbound client against our scriptable sink (test/helpers/sink.ts), and once against an
// independent server (Postfix's smtp-sink) when it is installed.
import { afterEach, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { connectSmtp } from "../../src/delivery/dial.ts";
import {
  type ClientOptions,
  type OutboundEnvelope,
  type SmtpClientConnection,
  SmtpClientError,
} from "../../src/smtp/client.ts";
import { latin1, type SinkStartOptions, SmtpSink, sinkTlsMaterial } from "../helpers/sink.ts";

const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, "utf8"));

const sinks: SmtpSink[] = [];
const clients: SmtpClientConnection[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of sinks.splice(0)) await s.stop();
});

async function sink(opts: SinkStartOptions = {}): Promise<SmtpSink> {
  const s = await SmtpSink.start(opts);
  sinks.push(s);
  return s;
}

async function connect(s: SmtpSink, opts: Partial<ClientOptions> = {}): Promise<SmtpClientConnection> {
  const c = await connectSmtp({
    host: s.host,
    port: s.port,
    helo: "client.test",
    tls: "opportunistic",
    timeouts: { connect: 2000, greeting: 2000, command: 2000, dataBlock: 2000, dataEnd: 2000 },
    ...opts,
  });
  clients.push(c);
  return c;
}

/** Connect expecting a failure; returns the error. */
async function connectError(s: SmtpSink, opts: Partial<ClientOptions> = {}): Promise<SmtpClientError> {
  try {
    await connect(s, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(SmtpClientError);
    return err as SmtpClientError;
  }
  throw new Error("connect succeeded");
}

function envelope(
  to: string[],
  data: string | Uint8Array = "Subject: test\r\n\r\nHello\r\n",
): OutboundEnvelope {
  return {
    mailFrom: "sender@origin.test",
    recipients: to.map((address) => ({ address })),
    data: typeof data === "string" ? bytes(data) : data,
  };
}

const codes = (r: { recipients: { reply: { code: number } }[] }) => r.recipients.map((x) => x.reply.code);

describe("delivery to the sink", () => {
  test("plain delivery, then QUIT", async () => {
    const s = await sink();
    const c = await connect(s);
    expect(c.tls).toBeUndefined();
    expect(c.remote).toBe(`${s.host}[127.0.0.1]:${s.port}`);
    const r = await c.send(envelope(["rcpt@dest.test"]));
    expect(r.recipients).toEqual([
      { address: "rcpt@dest.test", reply: { code: 250, enhanced: "2.0.0", text: "Ok: queued as 1" } },
    ]);
    await c.quit();
    expect(c.usable).toBe(false);
    const [m] = await s.waitForMessages(1);
    expect(m!.mailFrom).toBe("sender@origin.test");
    expect(m!.recipients).toEqual(["rcpt@dest.test"]);
    expect(latin1(m!.data)).toBe("Subject: test\r\n\r\nHello\r\n");
    expect(m!.tls).toBe(false);
    expect(m!.helo).toBe("client.test");
    await s.waitForIdle();
    expect(s.commands.at(-1)).toBe("QUIT");
  });

  test("STARTTLS when offered: the sink sees TLS; EHLO again after it", async () => {
    const s = await sink({ starttls: true });
    const c = await connect(s);
    expect(c.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(c.tls?.cipher).toBeTruthy();
    expect(c.extensions.has("STARTTLS")).toBe(false);
    await c.send(envelope(["a@dest.test"]));
    const [m] = await s.waitForMessages(1);
    expect(m!.tls).toBe(true);
    expect(s.commands.slice(0, 3)).toEqual(["EHLO client.test", "STARTTLS", "EHLO client.test"]);
  });

  test("plain when STARTTLS is not offered, and when tls is 'none'", async () => {
    const s = await sink({ starttls: false });
    const c = await connect(s);
    expect(c.tls).toBeUndefined();
    await c.send(envelope(["a@dest.test"]));

    const t = await sink({ starttls: true });
    const d = await connect(t, { tls: "none" });
    expect(d.tls).toBeUndefined();
    await d.send(envelope(["a@dest.test"]));
    expect((await s.waitForMessages(1))[0]!.tls).toBe(false);
    expect((await t.waitForMessages(1))[0]!.tls).toBe(false);
    expect(t.commands).not.toContain("STARTTLS");
  });

  test("PIPELINING: MAIL, RCPTs and DATA in one write when offered; lock-step otherwise", async () => {
    const to = ["a@dest.test", "b@dest.test", "c@dest.test"];
    const p = await sink({ pipelining: true });
    const c = await connect(p);
    expect(codes(await c.send(envelope(to)))).toEqual([250, 250, 250]);
    const [pm] = await p.waitForMessages(1);
    expect(pm!.pipelined).toBe(true);
    expect(pm!.recipients).toEqual(to);

    const l = await sink({ pipelining: false });
    const d = await connect(l);
    expect(codes(await d.send(envelope(to)))).toEqual([250, 250, 250]);
    const [lm] = await l.waitForMessages(1);
    expect(lm!.pipelined).toBe(false);
    expect(lm!.recipients).toEqual(to);
  });

  test("three transactions on one connection (RSET after a failed one)", async () => {
    for (const pipelining of [true, false]) {
      const s = await sink({
        pipelining,
        rcptReply: (address) => (address.startsWith("nobody") ? "550 5.1.1 No such user" : undefined),
      });
      const c = await connect(s);
      expect(codes(await c.send(envelope(["one@dest.test"], "Subject: 1\r\n\r\n1\r\n")))).toEqual([250]);
      expect(codes(await c.send(envelope(["nobody@dest.test"])))).toEqual([550]);
      expect(codes(await c.send(envelope(["two@dest.test"], "Subject: 2\r\n\r\n2\r\n")))).toEqual([250]);
      expect(codes(await c.send(envelope(["three@dest.test"], "Subject: 3\r\n\r\n3\r\n")))).toEqual([250]);
      await c.quit();
      const ms = await s.waitForMessages(3);
      expect(ms.map((m) => m.recipients[0])).toEqual(["one@dest.test", "two@dest.test", "three@dest.test"]);
      expect(s.connectionCount).toBe(1);
      // Exactly one RSET: after the refused transaction, not after the delivered ones.
      expect(s.commands.filter((x) => x === "RSET")).toHaveLength(1);
      expect(ms.map((m) => m.connection)).toEqual([1, 1, 1]);
    }
  });

  test("per-recipient results: 250, 550, 451 in order", async () => {
    for (const pipelining of [true, false]) {
      const s = await sink({
        pipelining,
        rcptReply: (a) =>
          a.startsWith("bad")
            ? "550 5.1.1 No such user"
            : a.startsWith("later")
              ? "451 4.7.1 Greylisted"
              : undefined,
      });
      const c = await connect(s);
      const r = await c.send(envelope(["ok@dest.test", "bad@dest.test", "later@dest.test"]));
      expect(r.recipients).toEqual([
        { address: "ok@dest.test", reply: { code: 250, enhanced: "2.0.0", text: "Ok: queued as 1" } },
        { address: "bad@dest.test", reply: { code: 550, enhanced: "5.1.1", text: "No such user" } },
        { address: "later@dest.test", reply: { code: 451, enhanced: "4.7.1", text: "Greylisted" } },
      ]);
      const [m] = await s.waitForMessages(1);
      expect(m!.recipients).toEqual(["ok@dest.test"]);
    }
  });

  test("every recipient refused: no DATA in lock-step; pipelined DATA refused", async () => {
    for (const pipelining of [true, false]) {
      const s = await sink({ pipelining, mode: "permfail-rcpt" });
      const c = await connect(s);
      const r = await c.send(envelope(["a@dest.test", "b@dest.test"]));
      expect(r.recipients.map((x) => x.reply)).toEqual([
        { code: 550, enhanced: "5.1.1", text: "Error: no such user" },
        { code: 550, enhanced: "5.1.1", text: "Error: no such user" },
      ]);
      expect(s.commands.includes("DATA")).toBe(pipelining);
      expect(s.messages).toHaveLength(0);
      expect(c.usable).toBe(true);
    }
  });

  test("temporary and permanent failure after the data", async () => {
    const t = await sink({ mode: "tempfail-data" });
    const c = await connect(t);
    expect((await c.send(envelope(["a@dest.test", "b@dest.test"]))).recipients.map((x) => x.reply)).toEqual([
      { code: 451, enhanced: "4.3.0", text: "Error: try again later" },
      { code: 451, enhanced: "4.3.0", text: "Error: try again later" },
    ]);
    const p = await sink({ mode: "permfail-data" });
    const d = await connect(p);
    expect(codes(await d.send(envelope(["a@dest.test"])))).toEqual([554]);
  });

  test("MAIL refused: every recipient gets its reply", async () => {
    const s = await sink({ size: 100 });
    const c = await connect(s);
    // The sink lowers its limit after EHLO: the client sends, and MAIL is refused.
    s.behaviour.size = 10;
    const r = await c.send(envelope(["a@dest.test", "b@dest.test"], "Subject: x\r\n\r\nyy\r\n"));
    expect(r.recipients.map((x) => x.reply.code)).toEqual([552, 552]);
    expect(s.transactions).toHaveLength(0);
  });

  test("a 421 greeting: SmtpClientError 'greeting' with the reply", async () => {
    const s = await sink({ mode: "greeting-421" });
    const err = await connectError(s);
    expect(err.kind).toBe("greeting");
    expect(err.reply).toEqual({ code: 421, enhanced: "4.3.2", text: "sink.test Service not available" });
    expect(err.message).toContain("421 4.3.2");
  });

  test("a server that never answers: timeout", async () => {
    const s = await sink({ mode: "hang" });
    const started = Date.now();
    const err = await connectError(s, { timeouts: { greeting: 300 } });
    expect(err.kind).toBe("timeout");
    expect(err.phase).toBe("greeting");
    expect(Date.now() - started).toBeLessThan(2000);
    await s.waitForIdle();
  });

  test("no reply after the data: timeout rejects the transaction", async () => {
    const s = await sink({ hangAt: "dot" });
    const c = await connect(s, { timeouts: { dataEnd: 300 } });
    const err = await c.send(envelope(["a@dest.test"])).catch((e) => e);
    expect(err).toBeInstanceOf(SmtpClientError);
    expect(err.kind).toBe("timeout");
    expect(err.phase).toBe("dot");
    expect(c.usable).toBe(false);
    await expect(c.send(envelope(["a@dest.test"]))).rejects.toBe(err);
  });

  test("no reply to RCPT: timeout; connection lost at DATA: closed", async () => {
    const h = await sink({ hangAt: "rcpt", pipelining: false });
    const c = await connect(h, { timeouts: { command: 300 } });
    const e1 = await c.send(envelope(["a@dest.test"])).catch((e) => e);
    expect([e1.kind, e1.phase]).toEqual(["timeout", "rcpt"]);

    const d = await sink({ dropAt: "data" });
    const c2 = await connect(d);
    const e2 = await c2.send(envelope(["a@dest.test"])).catch((e) => e);
    expect(e2).toBeInstanceOf(SmtpClientError);
    expect(e2.kind).toBe("closed");
  });

  test("a server that stops reading mid-message: the data-block timeout, not endless buffering", async () => {
    const s = await sink({ stallData: true });
    const c = await connect(s, { timeouts: { dataBlock: 300, dataEnd: 5000 } });
    const data = new Uint8Array(16 * 1024 * 1024).fill(0x61);
    for (let i = 0; i < data.length; i += 80) data[i] = 10;
    const started = Date.now();
    const err = await c.send(envelope(["a@dest.test"], data)).catch((e) => e);
    expect(err).toBeInstanceOf(SmtpClientError);
    expect([err.kind, err.phase]).toEqual(["timeout", "message"]);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test("a 421 mid-transaction answers the rest and ends the connection", async () => {
    const s = await sink({
      pipelining: false,
      rcptReply: (a) => (a.startsWith("b") ? "421 4.7.0 Too many errors, closing" : undefined),
    });
    const c = await connect(s);
    const r = await c.send(envelope(["a@dest.test", "b@dest.test", "c@dest.test"]));
    expect(r.recipients.map((x) => `${x.reply.code} ${x.reply.enhanced}`)).toEqual([
      "421 4.7.0",
      "421 4.7.0",
      "421 4.7.0",
    ]);
    expect(c.usable).toBe(false);
    expect(s.commands).not.toContain("DATA");
  });

  test("SIZE smaller than the message: 552 5.3.4 for all, nothing sent", async () => {
    const s = await sink({ size: 50 });
    const c = await connect(s);
    const r = await c.send(
      envelope(["a@dest.test", "b@dest.test"], `Subject: big\r\n\r\n${"x".repeat(100)}\r\n`),
    );
    expect(r.recipients.map((x) => x.reply)).toEqual([
      { code: 552, enhanced: "5.3.4", text: "Message size 118 exceeds the server's limit of 50 octets" },
      { code: 552, enhanced: "5.3.4", text: "Message size 118 exceeds the server's limit of 50 octets" },
    ]);
    expect(s.commands.some((x) => x.startsWith("MAIL"))).toBe(false);
    // The connection is still good for a message that fits.
    expect(codes(await c.send(envelope(["a@dest.test"], "S: x\r\n\r\nsmall\r\n")))).toEqual([250]);
    const [m] = await s.waitForMessages(1);
    expect(m!.mailParams).toEqual(["SIZE=15"]);
  });

  test("SMTPUTF8 needed and not offered: 553 5.6.7, nothing sent; offered: SMTPUTF8 on MAIL", async () => {
    const no = await sink({ smtputf8: false });
    const c = await connect(no);
    const env = envelope(["jörg@dest.test", "b@dest.test"]);
    env.recipients[0]!.address = "jörg@dest.test";
    const r = await c.send(env);
    expect(r.recipients.map((x) => x.reply)).toEqual([
      { code: 553, enhanced: "5.6.7", text: "SMTPUTF8 not offered by the server" },
      { code: 553, enhanced: "5.6.7", text: "SMTPUTF8 not offered by the server" },
    ]);
    expect(no.commands.some((x) => x.startsWith("MAIL"))).toBe(false);

    const yes = await sink({ smtputf8: true });
    const d = await connect(yes);
    expect(
      codes(await d.send({ ...envelope(["b@dest.test"]), data: utf8("Subject: Grüße\r\n\r\nHallo\r\n") })),
    ).toEqual([250]);
    expect(codes(await d.send(env))).toEqual([250, 250]);
    const ms = await yes.waitForMessages(2);
    expect(ms[0]!.mailParams).toEqual(["BODY=8BITMIME", "SMTPUTF8"]);
    expect(ms[1]!.mailParams).toEqual(["SMTPUTF8"]);
    expect(ms[1]!.recipients).toEqual(["jörg@dest.test", "b@dest.test"]);
    expect(Buffer.from(ms[0]!.data!).toString("utf8")).toBe("Subject: Grüße\r\n\r\nHallo\r\n");
  });

  test("BODY=8BITMIME only when offered; 8-bit data sent as it is either way", async () => {
    const data = bytes("Subject: x\r\n\r\ncaf\xe9\r\n");
    const yes = await sink({ eightBitMime: true });
    await (await connect(yes)).send(envelope(["a@dest.test"], data));
    const no = await sink({ eightBitMime: false });
    await (await connect(no)).send(envelope(["a@dest.test"], data));
    const [y] = await yes.waitForMessages(1);
    const [n] = await no.waitForMessages(1);
    expect(y!.mailParams).toEqual(["BODY=8BITMIME"]);
    expect(n!.mailParams).toEqual([]);
    expect(latin1(y!.data)).toBe(latin1(data));
    expect(latin1(n!.data)).toBe(latin1(data));
  });

  test("DSN parameters only when the server offers DSN", async () => {
    const env: OutboundEnvelope = {
      mailFrom: "sender@origin.test",
      recipients: [{ address: "a@dest.test", notify: "SUCCESS,FAILURE", orcpt: "rfc822;a+x@dest.test" }],
      envid: "QQ314159",
      ret: "HDRS",
      data: bytes("Subject: x\r\n\r\ny\r\n"),
    };
    const yes = await sink({ dsn: true, size: 1000 });
    await (await connect(yes)).send(env);
    const no = await sink({ dsn: false });
    await (await connect(no)).send(env);
    const [y] = await yes.waitForMessages(1);
    const [n] = await no.waitForMessages(1);
    expect(y!.mailParams).toEqual(["SIZE=17", "RET=HDRS", "ENVID=QQ314159"]);
    expect(y!.rcpts[0]!.params).toEqual(["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a+2Bx@dest.test"]);
    expect(n!.mailParams).toEqual([]);
    expect(n!.rcpts[0]!.params).toEqual([]);
  });

  test("EHLO refused with 5xx: HELO, no extensions, lock-step", async () => {
    const s = await sink({ esmtp: false });
    const c = await connect(s);
    expect(c.extensions.size).toBe(0);
    expect(codes(await c.send(envelope(["a@dest.test", "b@dest.test"])))).toEqual([250, 250]);
    const [m] = await s.waitForMessages(1);
    expect(m!.helo).toBe("client.test");
    expect(m!.pipelined).toBe(false);
    expect(s.commands.slice(0, 2)).toEqual(["EHLO client.test", "HELO client.test"]);
  });

  test("LMTP: LHLO, one reply per recipient after the data", async () => {
    const s = await sink({
      lmtp: true,
      rcptReply: (a) => (a.startsWith("gone") ? "550 5.1.1 No such mailbox" : undefined),
      dataReply: (_tx, rcpt) =>
        rcpt?.startsWith("full")
          ? "452 4.2.2 Mailbox full"
          : rcpt?.startsWith("bad")
            ? "554 5.6.0 No"
            : undefined,
    });
    const c = await connect(s, { lmtp: true });
    const r = await c.send(envelope(["ok@dest.test", "full@dest.test", "gone@dest.test", "bad@dest.test"]));
    expect(r.recipients.map((x) => `${x.address} ${x.reply.code} ${x.reply.enhanced}`)).toEqual([
      "ok@dest.test 250 2.0.0",
      "full@dest.test 452 4.2.2",
      "gone@dest.test 550 5.1.1",
      "bad@dest.test 554 5.6.0",
    ]);
    expect(s.commands[0]).toBe("LHLO client.test");
    // The connection stays in step for the next transaction.
    expect(codes(await c.send(envelope(["ok2@dest.test"])))).toEqual([250]);
    await s.waitForMessages(2);
  });

  test("a 2 MB message with dot lines arrives byte-exact; bare LF arrives as CRLF", async () => {
    const lines: string[] = ["Subject: dots", ""];
    for (let i = 0, size = 0; size < 2 * 1024 * 1024; i++) {
      const line =
        i % 3 === 0 ? "." : i % 3 === 1 ? `.line ${i} ${"z".repeat(60)}` : `..${"y".repeat(i % 900)}`;
      lines.push(line);
      size += line.length + 2;
    }
    const message = `${lines.join("\r\n")}\r\n`;
    const s = await sink();
    const c = await connect(s);
    expect(codes(await c.send(envelope(["a@dest.test"], message)))).toEqual([250]);
    const bare = "Subject: lf\n\nline one\n.dot\nno end";
    expect(codes(await c.send(envelope(["a@dest.test"], bare)))).toEqual([250]);
    const [big, lf] = await s.waitForMessages(2);
    expect(big!.data!.length).toBe(message.length);
    expect(latin1(big!.data) === message).toBe(true);
    expect(latin1(lf!.data)).toBe("Subject: lf\r\n\r\nline one\r\n.dot\r\nno end\r\n");
    expect(lf!.bareLf || lf!.bareCr || big!.bareLf || big!.bareCr).toBe(false);
  });

  test("AUTH PLAIN over STARTTLS against a sink that requires it", async () => {
    const auth = { username: "relay-user", password: "s3cret pass" };
    const s = await sink({ starttls: true, auth });
    const c = await connect(s, { auth });
    expect(c.tls).toBeDefined();
    expect(codes(await c.send(envelope(["a@dest.test"])))).toEqual([250]);
    const [m] = await s.waitForMessages(1);
    expect(m!.authUser).toBe("relay-user");
    expect(m!.tls).toBe(true);
    expect(s.commands).toContain("AUTH PLAIN");

    const bad = await connectError(s, { auth: { ...auth, password: "wrong" } });
    expect(bad.kind).toBe("auth");
    expect(bad.reply?.code).toBe(535);
  });

  test("AUTH LOGIN when only LOGIN is offered", async () => {
    const auth = { username: "u", password: "p" };
    const s = await sink({ starttls: true, auth, authMechanisms: ["LOGIN", "CRAM-MD5"] });
    const c = await connect(s, { auth });
    expect(codes(await c.send(envelope(["a@dest.test"])))).toEqual([250]);
    expect(s.commands).toContain("AUTH LOGIN");
    expect((await s.waitForMessages(1))[0]!.authUser).toBe("u");

    const t = await sink({ starttls: true, auth, authMechanisms: ["CRAM-MD5"] });
    const err = await connectError(t, { auth });
    expect(err.kind).toBe("auth");
    expect(err.message).toContain("CRAM-MD5");
  });

  test("credentials are never sent without TLS", async () => {
    const auth = { username: "u", password: "p" };
    const s = await sink({ starttls: false, auth });
    const err = await connectError(s, { auth });
    expect(err.kind).toBe("auth");
    expect(s.commands.some((x) => x.startsWith("AUTH"))).toBe(false);
    const none = await connectError(s, { auth, tls: "none" });
    expect(none.kind).toBe("auth");
  });

  test("IPv6: connect to ::1", async () => {
    const s = await sink({ host: "::1" });
    const c = await connect(s, { host: "::1" });
    expect(c.remote).toBe(`::1[::1]:${s.port}`);
    expect(codes(await c.send(envelope(["a@dest.test"])))).toEqual([250]);
    expect((await s.waitForMessages(1))[0]!.recipients).toEqual(["a@dest.test"]);
  });

  test("`ip` connects to the given address and keeps the name for logs", async () => {
    const s = await sink();
    const c = await connect(s, { host: "mx.dest.test", ip: "127.0.0.1" });
    expect(c.remote).toBe(`mx.dest.test[127.0.0.1]:${s.port}`);
  });

  test("garbage or an overlong reply line: protocol error, not a hang", async () => {
    for (const reply of ["HTTP/1.0 200 OK", `250 ${"x".repeat(5000)}`]) {
      const s = await sink({ pipelining: false, rcptReply: () => reply });
      const c = await connect(s);
      const err = await c.send(envelope(["a@dest.test"])).catch((e) => e);
      expect(err).toBeInstanceOf(SmtpClientError);
      expect(err.kind).toBe("protocol");
      expect(err.phase).toBe("rcpt");
      expect(c.usable).toBe(false);
    }
  });

  test("a TLS handshake that fails: kind 'tls'", async () => {
    // A server that says yes to STARTTLS and then speaks no TLS.
    const server = net.createServer((socket) => {
      socket.write("220 liar.test ESMTP\r\n");
      socket.on("data", (chunk) => {
        const line = chunk.toString("latin1");
        if (line.startsWith("EHLO")) socket.write("250-liar.test\r\n250 STARTTLS\r\n");
        else if (line.startsWith("STARTTLS")) socket.write("220 2.0.0 Go ahead\r\n");
        else socket.end("this is not a TLS record\r\n");
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const err = await connectSmtp({
        host: "127.0.0.1",
        port,
        helo: "c.test",
        tls: "opportunistic",
        timeouts: { command: 2000 },
      }).catch((e) => e);
      expect(err).toBeInstanceOf(SmtpClientError);
      expect([err.kind, err.phase]).toEqual(["tls", "tls"]);
    } finally {
      server.close();
    }
  });

  test("replies injected behind the 220 to STARTTLS are thrown away", async () => {
    const { cert, key } = await sinkTlsMaterial();
    const server = net.createServer((socket) => {
      socket.on("error", () => {});
      socket.write("220 inject.test ESMTP\r\n");
      const plainData = (chunk: Buffer) => {
        const line = chunk.toString("latin1");
        if (line.startsWith("EHLO")) socket.write("250-inject.test\r\n250 STARTTLS\r\n");
        else if (line.startsWith("STARTTLS")) {
          socket.off("data", plainData);
          socket.write("220 2.0.0 Go ahead\r\n250-injected.test\r\n250 INJECTED\r\n");
          const secure = new tls.TLSSocket(socket, { isServer: true, cert, key });
          secure.on("error", () => {});
          secure.on("data", (c: Buffer) => {
            if (c.toString("latin1").startsWith("EHLO")) secure.write("250-inject.test\r\n250 AFTERTLS\r\n");
          });
        }
      };
      socket.on("data", plainData);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const c = await connectSmtp({
        host: "127.0.0.1",
        port,
        helo: "c.test",
        tls: "opportunistic",
        timeouts: { command: 2000 },
      });
      clients.push(c);
      expect(c.tls).toBeDefined();
      expect([...c.extensions.keys()]).toEqual(["AFTERTLS"]);
    } finally {
      server.close();
    }
  });

  test("connection refused: kind 'connect'", async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const err = await connectSmtp({
      host: "127.0.0.1",
      port,
      helo: "c.test",
      tls: "none",
    }).catch((e) => e);
    expect(err).toBeInstanceOf(SmtpClientError);
    expect(err.kind).toBe("connect");
  });

  test("addresses with control characters are refused without being sent", async () => {
    const s = await sink();
    const c = await connect(s);
    const r = await c.send(envelope(["a@dest.test>\r\nRCPT TO:<evil@x.test", "b@dest.test"]));
    expect(r.recipients.map((x) => `${x.reply.code} ${x.reply.enhanced}`)).toEqual([
      "553 5.1.3",
      "250 2.0.0",
    ]);
    expect((await s.waitForMessages(1))[0]!.recipients).toEqual(["b@dest.test"]);
    expect(s.commands.some((x) => x.includes("evil"))).toBe(false);
  });
});

// An independent server: Postfix's smtp-sink (Debian package postfix). Skipped when missing.
const SMTP_SINK = "/usr/sbin/smtp-sink";

describe.skipIf(!existsSync(SMTP_SINK))("against Postfix smtp-sink", () => {
  test("a pipelined transaction with dot lines, checked in smtp-sink's dump", async () => {
    const dir = mkdtempSync(join(tmpdir(), "postern-smtp-sink-"));
    chmodSync(dir, 0o777);
    const port = await freePort();
    const args = ["-d", `${dir}/%M.`, "-h", "realsink.test", `127.0.0.1:${port}`, "10"];
    if (process.getuid?.() === 0) args.unshift("-u", "nobody");
    const child = spawn(SMTP_SINK, args, { stdio: "ignore" });
    try {
      await waitForPort(port);
      const c = await connectSmtp({
        host: "127.0.0.1",
        port,
        helo: "client.test",
        tls: "opportunistic",
        timeouts: { connect: 2000, greeting: 2000, command: 2000 },
      });
      clients.push(c);
      expect(c.extensions.has("PIPELINING")).toBe(true);
      const message = "Subject: real\r\n\r\n.first\r\nmiddle\r\n..two\r\n.\r\nlast";
      const r = await c.send({
        mailFrom: "sender@origin.test",
        recipients: [{ address: "a@dest.test", notify: "FAILURE" }, { address: "b@dest.test" }],
        data: bytes(message),
      });
      expect(r.recipients.map((x) => `${x.reply.code} ${x.reply.enhanced}`)).toEqual([
        "250 2.0.0",
        "250 2.0.0",
      ]);
      await c.quit();
      const dump = await waitForDump(dir);
      expect(dump).toContain("X-Mail-Args: <sender@origin.test>");
      expect(dump).toContain("X-Rcpt-Args: <a@dest.test> NOTIFY=FAILURE");
      expect(dump).toContain("X-Rcpt-Args: <b@dest.test>\n");
      // smtp-sink writes lines with LF; the message follows its three-line Received header.
      const body = dump.slice(dump.indexOf("Subject: real"));
      expect(body).toBe("Subject: real\n\n.first\nmiddle\n..two\n.\nlast\n\n");
    } finally {
      if (child.pid) process.kill(child.pid, "SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await Bun.sleep(30);
  }
}

async function waitForDump(dir: string, timeoutMs = 3000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const files = readdirSync(dir);
    if (files.length > 0) {
      const text = readFileSync(join(dir, files[0]!), "utf8");
      // The file is complete once the trailing empty line is there.
      if (text.endsWith("\n\n")) return text;
    }
    if (Date.now() > deadline) throw new Error("smtp-sink wrote no dump");
    await Bun.sleep(30);
  }
}
