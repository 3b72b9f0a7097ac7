// The SMTP client's protocol over an in-memory stream pair: the server side is a script here,
// so every reply, its timing and its bytes are the test's (mox's smtpclient tests over
// net.Pipe() are the model). No listening socket, no dialing, no TLS library.
import { describe, expect, test } from "bun:test";
import { type Duplex, duplexPair } from "node:stream";
import { type ClientOptions, SmtpClientConnection, SmtpClientError } from "../../src/smtp/client.ts";
import type { StartTls, TlsClientStream } from "../../src/smtp/client-stream.ts";

type Answer = (line: string) => string | undefined;

/** The server end: answers each command line (and a whole DATA body, as "<data>") by the script. */
class ScriptedServer {
  readonly lines: string[] = [];
  readonly bodies: string[] = [];
  /** Each chunk the client wrote, as it came (a pipelined client writes several commands at once). */
  readonly writes: string[] = [];
  private buffer = "";
  private inData = false;

  constructor(
    private readonly end: Duplex,
    private readonly answer: Answer,
  ) {
    end.on("data", (chunk: Buffer) => {
      this.writes.push(chunk.toString("latin1"));
      this.buffer += chunk.toString("latin1");
      this.pump();
    });
  }

  say(text: string): void {
    this.end.write(Buffer.from(text, "latin1"));
  }

  private pump(): void {
    for (;;) {
      if (this.inData) {
        const end = this.buffer.indexOf("\r\n.\r\n");
        if (end < 0) return;
        this.bodies.push(this.buffer.slice(0, end + 2));
        this.buffer = this.buffer.slice(end + 5);
        this.inData = false;
        this.reply(this.answer("<data>"));
        continue;
      }
      const lf = this.buffer.indexOf("\r\n");
      if (lf < 0) return;
      const line = this.buffer.slice(0, lf);
      this.buffer = this.buffer.slice(lf + 2);
      this.lines.push(line);
      const r = this.answer(line);
      if (r?.startsWith("354")) this.inData = true;
      this.reply(r);
    }
  }

  private reply(r: string | undefined): void {
    if (r !== undefined) this.say(`${r.replace(/\n/g, "\r\n")}\r\n`);
  }
}

/** An ESMTP server that takes everything, with overrides per command verb. */
function esmtp(
  over: Record<string, string | undefined> = {},
  extensions = ["PIPELINING", "8BITMIME"],
): Answer {
  return (line) => {
    const verb = line === "<data>" ? "<data>" : line.split(/[ :]/)[0]!.toUpperCase();
    if (verb in over) return over[verb];
    switch (verb) {
      case "EHLO":
      case "LHLO":
        return [
          "250-test.example",
          ...extensions.slice(0, -1).map((e) => `250-${e}`),
          `250 ${extensions.at(-1)}`,
        ].join("\n");
      case "DATA":
        return "354 go ahead";
      case "QUIT":
        return "221 bye";
      default:
        return "250 2.0.0 ok";
    }
  };
}

const OPTIONS: ClientOptions = { host: "peer.test", port: 25, helo: "mx.example.test", tls: "none" };

async function session(
  answer: Answer,
  opts: Partial<ClientOptions> = {},
  greeting = "220 peer.test ESMTP\r\n",
) {
  const [clientEnd, serverEnd] = duplexPair();
  const server = new ScriptedServer(serverEnd, answer);
  if (greeting) server.say(greeting);
  const conn = SmtpClientConnection.open(clientEnd, { ...OPTIONS, ...opts });
  return { server, conn };
}

const message = (text: string) => new TextEncoder().encode(text);

describe("SMTP client protocol (in-memory peer)", () => {
  test("a pipelined transaction: MAIL, RCPTs and DATA in one write, the body dot-stuffed", async () => {
    const { server, conn } = await session(esmtp());
    const c = await conn;
    const result = await c.send({
      mailFrom: "a@example.test",
      recipients: [{ address: "b@remote.test" }, { address: "c@remote.test" }],
      data: message("Subject: x\r\n\r\n.leading dot\r\nend\r\n"),
    });
    expect(result.recipients.map((r) => r.reply.code)).toEqual([250, 250]);
    expect(
      server.writes.some((w) => w.includes("MAIL FROM:<a@example.test>") && w.includes("DATA\r\n")),
    ).toBe(true);
    expect(server.bodies).toEqual(["Subject: x\r\n\r\n..leading dot\r\nend\r\n"]);
    await c.quit();
  }, 5000);

  test("an old server: EHLO refused with 502, the client falls back to HELO", async () => {
    const { server, conn } = await session(esmtp({ EHLO: "502 5.5.2 what?" }));
    const c = await conn;
    expect(server.lines.slice(0, 2)).toEqual(["EHLO mx.example.test", "HELO mx.example.test"]);
    expect(c.extensions.size).toBe(0);
    c.close();
  });

  test("a 421 to RCPT ends the transaction for every recipient and the connection", async () => {
    let rcpts = 0;
    const closing = await session((line) => {
      if (line.startsWith("RCPT")) return ++rcpts === 1 ? "250 ok" : "421 4.3.2 going down";
      return esmtp({}, ["8BITMIME"])(line);
    });
    const d = await closing.conn;
    const result = await d.send({
      mailFrom: "a@example.test",
      recipients: [{ address: "b@remote.test" }, { address: "c@remote.test" }],
      data: message("x\r\n"),
    });
    expect(result.recipients.map((r) => r.reply.code)).toEqual([421, 421]);
    expect(d.usable).toBe(false);
  });

  test("LMTP: one reply per accepted recipient after the data", async () => {
    let n = 0;
    const { server, conn } = await session(
      (line) =>
        line === "<data>"
          ? ++n === 1
            ? "250 2.0.0 kept\r\n452 4.2.2 over quota"
            : undefined
          : esmtp()(line),
      { lmtp: true },
    );
    const c = await conn;
    expect(server.lines[0]).toBe("LHLO mx.example.test");
    const result = await c.send({
      mailFrom: "a@example.test",
      recipients: [{ address: "b@example.test" }, { address: "c@example.test" }],
      data: message("x\r\n"),
    });
    expect(result.recipients.map((r) => `${r.reply.code} ${r.reply.enhanced}`)).toEqual([
      "250 2.0.0",
      "452 4.2.2",
    ]);
    c.close();
  });

  test("STARTTLS: a reply smuggled in plain text after the 220 is thrown away", async () => {
    const fakeTls: StartTls = async (plain) =>
      Object.assign(plain, {
        getProtocol: () => "TLSv1.3",
        getCipher: () => ({ name: "TEST" }),
      }) as TlsClientStream;
    let ehlos = 0;
    const { server, conn } = await session(
      esmtp({
        EHLO: undefined,
        STARTTLS: "220 2.0.0 ready\n250 injected-before-tls",
      }),
      { tls: "opportunistic", startTls: fakeTls },
    );
    // the EHLO answers by hand: the first offers STARTTLS, the second (under "TLS") does not
    const answerEhlo = setInterval(() => {
      const seen = server.lines.filter((l) => l.startsWith("EHLO")).length;
      while (ehlos < seen) {
        ehlos++;
        server.say(
          ehlos === 1 ? "250-test.example\r\n250 STARTTLS\r\n" : "250-test.example\r\n250 SIZE 1000\r\n",
        );
      }
    }, 5);
    try {
      const c = await conn;
      expect(c.tls).toEqual({ protocol: "TLSv1.3", cipher: "TEST", verified: false, verifyError: undefined });
      expect(c.extensions.get("SIZE")).toBe("1000"); // from the EHLO after TLS, not the injected 250
      expect(c.usable).toBe(true);
      c.close();
    } finally {
      clearInterval(answerEhlo);
    }
  });

  test("a server that never greets: a timeout naming the phase", async () => {
    const { conn } = await session(() => undefined, { timeouts: { greeting: 100 } }, "");
    const err = await conn.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SmtpClientError);
    expect((err as SmtpClientError).kind).toBe("timeout");
    expect((err as SmtpClientError).phase).toBe("greeting");
  });

  test("a server that stops answering after the data: a timeout, the connection unusable", async () => {
    const { conn } = await session(esmtp({ "<data>": undefined }), { timeouts: { dataEnd: 100 } });
    const c = await conn;
    const err = await c
      .send({
        mailFrom: "a@example.test",
        recipients: [{ address: "b@remote.test" }],
        data: message("x\r\n"),
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((err as SmtpClientError).kind).toBe("timeout");
    expect((err as SmtpClientError).phase).toBe("dot");
    expect(c.usable).toBe(false);
  });
});
