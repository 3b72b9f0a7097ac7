import { describe, expect, test } from "bun:test";
import { R } from "../../src/smtp/reply.ts";
import {
  type AuthOutcome,
  type BackendStep,
  type Envelope,
  MAX_COMMAND_OCTETS,
  type PortKind,
  type RecipientDecision,
  type SessionBackend,
  type SessionEvent,
  type SessionPolicy,
  SmtpSession,
  TIMEOUTS,
} from "../../src/smtp/session.ts";

const HOST = "mx.postern.test";
const CLIENT_IP = "192.0.2.7";
const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const DATE = "Fri, 2 Jan 2026 03:04:05 +0000";
const ALICE = "alice@example.test";
const PASSWORD = "correct horse";
const TLS = { protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" };

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const plain = (user: string, password: string, authzid = "") => b64(`${authzid}\0${user}\0${password}`);

// ---------------------------------------------------------------------------------------------
// An in-memory backend: local domain example.test with alice and bob; alice may log in and send
// as herself; anything else is relayed only for an authenticated session.

interface Stored {
  id: string;
  envelope: Envelope;
  content: string;
}

class MemoryBackend implements SessionBackend {
  readonly local = new Set([ALICE, "bob@example.test"]);
  readonly stored: Stored[] = [];
  readonly calls: string[] = [];
  /** accept() throws while this is set. */
  failAccept = false;
  /** These steps throw as a backend does when its database is away. */
  readonly failing = new Set<BackendStep>();

  private fail(step: BackendStep): void {
    if (this.failing.has(step)) throw new Error(`${step}: connect ECONNREFUSED 127.0.0.1:5432`);
  }
  /** accept() waits for this before committing. */
  gate: Promise<void> | undefined;
  /** Real timer delays (ms) taken by the next checks, in order; proves replies keep their order. */
  checkDelays: number[] = [];

  private async pause(): Promise<void> {
    const ms = this.checkDelays.shift();
    if (ms !== undefined) await Bun.sleep(ms);
  }

  /** Client IPs whose AUTH the backend says are locked out. */
  lockedOut = new Set<string>();

  async authenticate(username: string, password: string, clientIp: string): Promise<AuthOutcome> {
    this.calls.push(`auth ${username}`);
    this.fail("authenticate");
    if (this.lockedOut.has(clientIp)) return { kind: "locked-out" };
    const login = username.toLowerCase();
    return login === ALICE && password === PASSWORD ? { kind: "ok", login } : { kind: "wrong" };
  }

  async checkSender(address: string, ctx: { authUser: string | undefined }) {
    this.calls.push(`sender ${address}`);
    await this.pause();
    this.fail("checkSender");
    if (ctx.authUser && address !== "" && address.toLowerCase() !== ctx.authUser) {
      return R.senderNotOwned(address);
    }
    return undefined;
  }

  async checkRecipient(address: string, ctx: { authUser: string | undefined }): Promise<RecipientDecision> {
    this.calls.push(`rcpt ${address}`);
    await this.pause();
    this.fail("checkRecipient");
    const domain = address.slice(address.lastIndexOf("@") + 1).toLowerCase();
    if (domain === "example.test") {
      return this.local.has(address.toLowerCase())
        ? { ok: true, target: { kind: "mailbox" } }
        : { ok: false, reply: R.unknownUser() };
    }
    return ctx.authUser ? { ok: true, target: { kind: "mx" } } : { ok: false, reply: R.relayDenied() };
  }

  async accept(id: string, envelope: Envelope, content: Uint8Array): Promise<void> {
    this.calls.push(`accept ${id}`);
    if (this.gate) await this.gate;
    if (this.failAccept) throw new Error("disk full");
    this.fail("accept");
    this.stored.push({ id, envelope, content: Buffer.from(content).toString("latin1") });
  }
}

interface Options {
  port?: PortKind;
  implicitTls?: boolean;
  policy?: Partial<SessionPolicy>;
}

/** Lets every pending promise (and a 0 ms timer) run: the session is then idle. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

class Harness {
  out = "";
  closed = false;
  tlsRequests = 0;
  readonly faults: unknown[] = [];
  readonly events: SessionEvent[] = [];
  /** The listener's TLS upgrade throws: a fault of ours, not the backend's. */
  startTlsFails = false;
  now = T0;
  readonly delays: number[] = [];
  readonly backend = new MemoryBackend();
  readonly session: SmtpSession;
  private ids = 0;

  constructor(opts: Options = {}) {
    const policy: SessionPolicy = {
      port: opts.port ?? "smtp",
      hostname: HOST,
      maxMessageBytes: 10_000,
      maxRecipients: 3,
      tlsAvailable: true,
      maxErrors: 10,
      maxAuthFailures: 3,
      authFailureDelayMs: (n) => 1000 * n,
      ...opts.policy,
    };
    this.session = new SmtpSession(
      policy,
      this.backend,
      {
        send: (text) => {
          if (this.closed) throw new Error(`sent after close: ${text}`);
          this.out += text;
        },
        event: (e) => {
          this.events.push(e);
        },
        startTls: () => {
          if (this.startTlsFails) throw new Error("upgrade blew up");
          this.tlsRequests++;
        },
        close: () => {
          this.closed = true;
        },
        fault: (err) => {
          this.faults.push(err);
        },
      },
      {
        now: () => this.now,
        sleep: async (ms) => {
          this.delays.push(ms);
        },
        newId: () => `QID${++this.ids}`,
      },
      CLIENT_IP,
      opts.implicitTls ? TLS : undefined,
    );
  }

  /** Feeds `data` whole, or in pieces of `pieceSize` octets; returns the replies it produced. */
  async send(data: string, pieceSize = 0): Promise<string[]> {
    const start = this.out.length;
    const b = new Uint8Array(Buffer.from(data, "latin1"));
    if (pieceSize <= 0) this.session.receive(b);
    else for (let i = 0; i < b.length; i += pieceSize) this.session.receive(b.slice(i, i + pieceSize));
    await settle();
    return replies(this.out.slice(start));
  }

  /** Sends each line with its CRLF, one at a time; returns all replies. */
  async lines(...lines: string[]): Promise<string[]> {
    const all: string[] = [];
    for (const line of lines) all.push(...(await this.send(`${line}\r\n`)));
    return all;
  }

  /** Replies of the session so far, as text lines. */
  get all(): string[] {
    return replies(this.out);
  }
}

/** Splits wire text into replies; a multi-line reply comes back joined with "\n". */
function replies(text: string): string[] {
  const out: string[] = [];
  let current: string[] = [];
  expect(text === "" || text.endsWith("\r\n")).toBe(true);
  for (const line of text.split("\r\n").slice(0, -1)) {
    current.push(line);
    if (!/^\d{3}-/.test(line)) {
      out.push(current.join("\n"));
      current = [];
    }
  }
  expect(current).toEqual([]);
  return out;
}

/** "250 2.1.0", or the code alone for replies without an enhanced status (220, 334, 354, EHLO). */
const code = (reply: string) => /^\d{3} \d\.\d{1,3}\.\d{1,3}/.exec(reply)?.[0] ?? reply.slice(0, 3);
const codes = (rs: string[]) => rs.map(code);

const BASE_EXTENSIONS = [
  "PIPELINING",
  "SIZE 10000",
  "8BITMIME",
  "SMTPUTF8",
  "ENHANCEDSTATUSCODES",
  "CHUNKING",
  "DSN",
];
const ehloReply = (extensions: string[]) =>
  [HOST, ...extensions].map((e, i, a) => `250${i === a.length - 1 ? " " : "-"}${e}`).join("\n");

const BODY = "Subject: hello\r\n\r\nHi Bob.\r\n";
const OK_SENDER = "250 2.1.0 Ok";
const OK_RCPT = "250 2.1.5 Ok";
const GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>";
const queued = (id: string) => `250 2.0.0 Ok: queued as ${id}`;

/** A whole inbound transaction as one pipelined string. */
const transaction = (body = BODY, rcpt = "bob@example.test") =>
  `MAIL FROM:<carol@remote.test>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n${body}.\r\n`;

async function authenticated(opts: Options = {}): Promise<Harness> {
  const h = new Harness({ port: "submission", implicitTls: true, ...opts });
  expect(codes(await h.lines("EHLO client.test", `AUTH PLAIN ${plain(ALICE, PASSWORD)}`))).toEqual([
    "250",
    "235 2.7.0",
  ]);
  return h;
}

// ---------------------------------------------------------------------------------------------

describe("greeting and EHLO", () => {
  test("the greeting names the host and carries no enhanced code", () => {
    const h = new Harness();
    h.session.greet();
    expect(h.out).toBe(`220 ${HOST} ESMTP Postern\r\n`);
  });

  test.each<[string, Options, boolean, string[]]>([
    ["MX port before TLS", { port: "smtp" }, false, [...BASE_EXTENSIONS, "STARTTLS"]],
    ["MX port after STARTTLS: no AUTH on port 25", { port: "smtp" }, true, BASE_EXTENSIONS],
    ["submission before TLS: no AUTH", { port: "submission" }, false, [...BASE_EXTENSIONS, "STARTTLS"]],
    ["submission after STARTTLS", { port: "submission" }, true, [...BASE_EXTENSIONS, "AUTH PLAIN LOGIN"]],
    [
      "submissions (implicit TLS)",
      { port: "submissions", implicitTls: true },
      false,
      [...BASE_EXTENSIONS, "AUTH PLAIN LOGIN"],
    ],
    [
      "no certificate: no STARTTLS",
      { port: "smtp", policy: { tlsAvailable: false } },
      false,
      BASE_EXTENSIONS,
    ],
    [
      "submission without a certificate",
      { port: "submission", policy: { tlsAvailable: false } },
      false,
      BASE_EXTENSIONS,
    ],
  ])("%s", async (_name, opts, startTls, extensions) => {
    const h = new Harness(opts);
    if (startTls) {
      expect(await h.lines("EHLO client.test", "STARTTLS")).toHaveLength(2);
      h.session.tlsStarted(TLS);
    }
    expect(await h.lines("EHLO client.test")).toEqual([ehloReply(extensions)]);
  });

  test("the SIZE it offers is the policy's", async () => {
    const h = new Harness({ policy: { maxMessageBytes: 26214400 } });
    expect((await h.lines("EHLO client.test"))[0]).toContain("\n250-SIZE 26214400\n");
  });

  test("once authenticated, EHLO no longer offers AUTH", async () => {
    const h = await authenticated();
    expect(await h.lines("EHLO client.test")).toEqual([ehloReply(BASE_EXTENSIONS)]);
  });

  test("HELO gets a plain 250 with the host name", async () => {
    const h = new Harness();
    expect(await h.lines("HELO client.test")).toEqual([`250 2.0.0 ${HOST}`]);
  });

  test.each(["EHLO", "EHLO bad_name", "HELO"])("%p → 501 5.5.4", async (line) => {
    const h = new Harness();
    expect(codes(await h.lines(line))).toEqual(["501 5.5.4"]);
  });
});

describe("simple commands", () => {
  test.each([
    ["NOOP", "250 2.0.0 Ok"],
    ["NOOP with an argument", "250 2.0.0 Ok"],
    ["HELP", "214 2.0.0 See RFC 5321"],
    ["VRFY alice", "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"],
    ["RSET", "250 2.0.0 Ok"],
    ["FOO", "500 5.5.2 Error: command not recognized"],
    ["", "500 5.5.2 Error: command not recognized"],
    ["MAIL FROM:carol@remote.test", "501 5.5.4 Syntax: angle brackets required around the address"],
    ["MAIL FROM:<carol@remote.test> FOO=1", "555 5.5.4 Error: unsupported MAIL parameter FOO"],
    ["DATA now", "501 5.5.4 Syntax: DATA takes no arguments"],
  ])("%p → %p", async (line, expected) => {
    const h = new Harness();
    await h.lines("EHLO client.test");
    expect(await h.lines(line)).toEqual([expected]);
    expect(h.closed).toBe(false);
  });

  test("QUIT → 221 and close; nothing after it is read", async () => {
    const h = new Harness();
    expect(await h.send("EHLO client.test\r\nQUIT\r\nNOOP\r\n")).toEqual([
      ehloReply([...BASE_EXTENSIONS, "STARTTLS"]),
      "221 2.0.0 Bye",
    ]);
    expect(h.closed).toBe(true);
    expect(await h.send("NOOP\r\n")).toEqual([]);
    expect(h.session.closed).toBe(true);
  });

  test.each<[string, string, (s: SmtpSession) => void]>([
    ["timedOut", "421 4.4.2", (s) => s.timedOut()],
    ["shutdown", "421 4.3.2", (s) => s.shutdown()],
  ])("%s → %s and close", async (_name, expected, act) => {
    const h = new Harness();
    await h.lines("EHLO client.test");
    act(h.session);
    expect(codes(h.all).at(-1)).toBe(expected);
    expect(h.closed).toBe(true);
    act(h.session); // a second call sends nothing more
    expect(codes(h.all).filter((c) => c.startsWith("421"))).toHaveLength(1);
  });

  test("the listener's timeout: commands 300 s, data blocks 180 s", async () => {
    const h = new Harness();
    expect(h.session.timeoutSeconds).toBe(TIMEOUTS.command);
    await h.send(
      `EHLO client.test\r\nMAIL FROM:<carol@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n`,
    );
    expect(h.session.timeoutSeconds).toBe(TIMEOUTS.dataBlock);
    await h.send(".\r\n");
    expect(h.session.timeoutSeconds).toBe(TIMEOUTS.command);
  });
});

describe("command order", () => {
  test.each<[string, Options, string[], string]>([
    ["MAIL before EHLO", {}, [], "MAIL FROM:<carol@remote.test>"],
    ["RCPT before MAIL", {}, ["EHLO client.test"], "RCPT TO:<bob@example.test>"],
    ["DATA before MAIL", {}, ["EHLO client.test"], "DATA"],
    [
      "DATA with no accepted RCPT",
      {},
      ["EHLO client.test", "MAIL FROM:<carol@remote.test>", "RCPT TO:<nobody@example.test>"],
      "DATA",
    ],
    [
      "nested MAIL",
      {},
      ["EHLO client.test", "MAIL FROM:<carol@remote.test>"],
      "MAIL FROM:<dave@remote.test>",
    ],
    [
      "RCPT after RSET",
      {},
      ["EHLO client.test", "MAIL FROM:<carol@remote.test>", "RSET"],
      "RCPT TO:<bob@example.test>",
    ],
    [
      "RCPT after a new EHLO",
      {},
      ["EHLO client.test", "MAIL FROM:<carol@remote.test>", "EHLO client.test"],
      "RCPT TO:<bob@example.test>",
    ],
    [
      "AUTH before EHLO",
      { port: "submissions", implicitTls: true },
      [],
      `AUTH PLAIN ${plain(ALICE, PASSWORD)}`,
    ],
    ["STARTTLS under TLS", { port: "submissions", implicitTls: true }, ["EHLO client.test"], "STARTTLS"],
    ["AUTH on the MX port", {}, ["EHLO client.test"], `AUTH PLAIN ${plain(ALICE, PASSWORD)}`],
  ])("%s → 503 5.5.1", async (_name, opts, before, line) => {
    const h = new Harness(opts);
    await h.lines(...before);
    expect(codes(await h.lines(line))).toEqual(["503 5.5.1"]);
    expect(h.closed).toBe(false);
  });

  test("RCPT after a finished message → 503 5.5.1 (the transaction is over)", async () => {
    const h = new Harness();
    await h.send(`EHLO client.test\r\n${transaction()}`);
    expect(codes(await h.lines("RCPT TO:<bob@example.test>"))).toEqual(["503 5.5.1"]);
  });
});

describe("a mail transaction", () => {
  test("MAIL, RCPT, DATA: queued with a Received header prepended", async () => {
    const h = new Harness();
    expect(
      await h.lines(
        "EHLO client.test",
        "MAIL FROM:<carol@remote.test> BODY=8BITMIME",
        "RCPT TO:<bob@example.test>",
        "DATA",
      ),
    ).toEqual([ehloReply([...BASE_EXTENSIONS, "STARTTLS"]), OK_SENDER, OK_RCPT, GO_AHEAD]);
    expect(h.backend.stored).toEqual([]);
    expect(await h.send(`${BODY}..dot line\r\n.\r\n`)).toEqual([queued("QID1")]);
    expect(h.backend.stored).toEqual([
      {
        id: "QID1",
        envelope: {
          mailFrom: "carol@remote.test",
          mailParams: { body: "8BITMIME" },
          recipients: [{ address: "bob@example.test", params: {}, target: { kind: "mailbox" } }],
          helo: "client.test",
          remoteIp: CLIENT_IP,
          authUser: undefined,
          port: "smtp",
          tls: undefined,
        },
        content:
          "Received: from client.test ([192.0.2.7])\r\n" +
          `\tby ${HOST} (Postern) with ESMTP id QID1\r\n` +
          `\tfor <bob@example.test>; ${DATE}\r\n` +
          `${BODY}.dot line\r\n`,
      },
    ]);
  });

  test("after HELO the Received header says SMTP", async () => {
    const h = new Harness();
    await h.send(`HELO client.test\r\n${transaction()}`);
    expect(h.backend.stored[0]!.content).toContain(`(Postern) with SMTP id QID1\r\n`);
  });

  test("several recipients and DSN parameters reach the envelope; no 'for' clause", async () => {
    const h = new Harness();
    await h.lines(
      "EHLO client.test",
      "MAIL FROM:<> RET=HDRS ENVID=abc+2B1 SIZE=100",
      "RCPT TO:<bob@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.test",
      "RCPT TO:<alice@example.test> NOTIFY=NEVER",
      "DATA",
    );
    expect(await h.send(`${BODY}.\r\n`)).toEqual([queued("QID1")]);
    const { envelope, content } = h.backend.stored[0]!;
    expect(envelope.mailFrom).toBe("");
    expect(envelope.mailParams).toEqual({ ret: "HDRS", envid: "abc+2B1", size: 100 });
    expect(envelope.recipients).toEqual([
      {
        address: "bob@example.test",
        params: { notify: ["FAILURE", "DELAY"], orcpt: "rfc822;bob@example.test" },
        target: { kind: "mailbox" },
      },
      { address: ALICE, params: { notify: ["NEVER"] }, target: { kind: "mailbox" } },
    ]);
    expect(content).not.toContain("for <");
  });

  test("250 comes only after accept() resolves, and pipelined replies wait behind it", async () => {
    const h = new Harness();
    let release!: () => void;
    h.backend.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = await h.send(`EHLO client.test\r\n${transaction()}NOOP\r\n`);
    expect(codes(first)).toEqual(["250", "250 2.1.0", "250 2.1.5", "354"]);
    expect(h.backend.calls.at(-1)).toBe("accept QID1");
    await Bun.sleep(5);
    expect(h.all).toHaveLength(4);
    expect(await h.send("NOOP\r\n")).toEqual([]);
    release();
    await settle();
    expect(h.all.slice(4)).toEqual([queued("QID1"), "250 2.0.0 Ok", "250 2.0.0 Ok"]);
    expect(h.backend.stored.map((s) => s.id)).toEqual(["QID1"]);
  });

  test("accept() throwing → 451 4.3.0; the next transaction works", async () => {
    const h = new Harness();
    h.backend.failAccept = true;
    expect(codes(await h.send(`EHLO client.test\r\n${transaction()}`)).at(-1)).toBe("451 4.3.0");
    expect(h.backend.stored).toEqual([]);
    h.backend.failAccept = false;
    expect((await h.send(transaction())).at(-1)).toBe(queued("QID2"));
    expect(h.backend.stored.map((s) => s.id)).toEqual(["QID2"]);
    expect(h.closed).toBe(false);
  });

  const pipelined =
    "EHLO client.test\r\n" +
    "MAIL FROM:<carol@remote.test>\r\n" +
    "RCPT TO:<bob@example.test>\r\n" +
    "RCPT TO:<nobody@example.test>\r\n" +
    "RCPT TO:<eve@elsewhere.test>\r\n" +
    "DATA\r\n" +
    "Subject: pipelined\r\n\r\n..one\r\ntwo\r\n.\r\n" +
    "NOOP\r\n" +
    "MAIL FROM:<carol@remote.test>\r\n" +
    "RCPT TO:<alice@example.test>\r\n" +
    "DATA\r\n" +
    "second\r\n.\r\n" +
    "QUIT\r\n";
  const pipelinedReplies = [
    ehloReply([...BASE_EXTENSIONS, "STARTTLS"]),
    OK_SENDER,
    OK_RCPT,
    "550 5.1.1 Error: mailbox unavailable: no such user here",
    "554 5.7.1 Error: relay access denied",
    GO_AHEAD,
    queued("QID1"),
    "250 2.0.0 Ok",
    OK_SENDER,
    OK_RCPT,
    GO_AHEAD,
    queued("QID2"),
    "221 2.0.0 Bye",
  ];

  test.each([
    ["one chunk", 0],
    ["1-octet chunks", 1],
    ["3-octet chunks", 3],
    ["100-octet chunks", 100],
  ])("a pipelined session in %s: the replies in order, the same messages", async (_name, pieceSize) => {
    const h = new Harness();
    expect(await h.send(pipelined, pieceSize)).toEqual(pipelinedReplies);
    expect(h.closed).toBe(true);
    expect(h.backend.stored.map((s) => [s.id, s.envelope.recipients.map((r) => r.address)])).toEqual([
      ["QID1", ["bob@example.test"]],
      ["QID2", [ALICE]],
    ]);
    expect(h.backend.stored[0]!.content).toEndWith(`${DATE}\r\nSubject: pipelined\r\n\r\n.one\r\ntwo\r\n`);
    expect(h.backend.stored[1]!.content).toEndWith(`${DATE}\r\nsecond\r\n`);
  });

  test("slow checks do not reorder pipelined replies", async () => {
    const h = new Harness();
    h.backend.checkDelays = [20, 15, 1, 10, 0];
    h.session.receive(new Uint8Array(Buffer.from(pipelined)));
    for (let i = 0; i < 200 && !h.closed; i++) await Bun.sleep(2);
    expect(h.all).toEqual(pipelinedReplies);
  });

  test("non-ASCII addresses need SMTPUTF8 (553 5.6.7)", async () => {
    const h = new Harness();
    await h.lines("EHLO client.test");
    expect(codes(await h.lines("MAIL FROM:<jörg@remote.test>"))).toEqual(["553 5.6.7"]);
    expect(codes(await h.lines("MAIL FROM:<carol@remote.test>", "RCPT TO:<bøb@example.test>"))).toEqual([
      "250 2.1.0",
      "553 5.6.7",
    ]);
    expect(codes(await h.lines("RSET", "MAIL FROM:<jörg@remote.test> SMTPUTF8"))).toEqual([
      "250 2.0.0",
      "250 2.1.0",
    ]);
  });

  test.each([
    ["a local user", "bob@example.test", "250 2.1.5"],
    ["local, case-insensitive", "Bob@Example.TEST", "250 2.1.5"],
    ["an unknown local user", "nobody@example.test", "550 5.1.1"],
    ["a remote address without AUTH (no open relay)", "eve@elsewhere.test", "554 5.7.1"],
  ])("RCPT to %s on the MX port → %s", async (_name, rcpt, expected) => {
    const h = new Harness();
    await h.lines("EHLO client.test", "MAIL FROM:<carol@remote.test>");
    expect(codes(await h.lines(`RCPT TO:<${rcpt}>`))).toEqual([expected]);
    expect(h.backend.calls).toContain(`rcpt ${rcpt}`);
  });

  test("too many recipients → 452 4.5.3; the accepted ones still get the message", async () => {
    const h = new Harness({ policy: { maxRecipients: 2 } });
    await h.lines("EHLO client.test", "MAIL FROM:<carol@remote.test>");
    expect(
      codes(
        await h.lines(
          "RCPT TO:<bob@example.test>",
          "RCPT TO:<nobody@example.test>",
          "RCPT TO:<alice@example.test>",
          "RCPT TO:<bob@example.test>",
        ),
      ),
    ).toEqual(["250 2.1.5", "550 5.1.1", "250 2.1.5", "452 4.5.3"]);
    expect(h.backend.calls.filter((c) => c.startsWith("rcpt"))).toHaveLength(3);
    expect((await h.send(`DATA\r\n${BODY}.\r\n`)).at(-1)).toBe(queued("QID1"));
    expect(h.backend.stored[0]!.envelope.recipients.map((r) => r.address)).toEqual([
      "bob@example.test",
      ALICE,
    ]);
  });

  test.each([
    ["SIZE= over the limit", "SIZE=10001", "552 5.3.4"],
    ["SIZE= at the limit", "SIZE=10000", "250 2.1.0"],
    ["SIZE=0", "SIZE=0", "250 2.1.0"],
  ])("%s at MAIL → %s", async (_name, param, expected) => {
    const h = new Harness();
    await h.lines("EHLO client.test");
    expect(codes(await h.lines(`MAIL FROM:<carol@remote.test> ${param}`))).toEqual([expected]);
  });

  test("a message over the limit → 552 5.3.4 at its end; nothing stored; the session goes on", async () => {
    const h = new Harness({ policy: { maxMessageBytes: 200 } });
    const big = `Subject: big\r\n\r\n${"x".repeat(60)}\r\n`.repeat(4);
    expect(codes(await h.send(`EHLO client.test\r\n${transaction(big)}`)).at(-1)).toBe("552 5.3.4");
    expect(h.backend.calls.some((c) => c.startsWith("accept"))).toBe(false);
    expect((await h.send(transaction("small\r\n"))).at(-1)).toBe(queued("QID1"));
  });

  test.each([
    ["a bare LF", "550 5.5.0", "Subject: x\r\n\r\nline\nmore\r\n", "bare LF"],
    ["a bare CR", "550 5.5.0", "Subject: x\r\n\r\nline\rmore\r\n", "bare CR"],
    ["a 999-octet line", "500 5.5.6", `Subject: x\r\n\r\n${"y".repeat(999)}\r\n`, "longer than 998"],
  ])("a message with %s → %s; the next transaction works", async (_name, expected, body, text) => {
    const h = new Harness();
    const rs = await h.send(`EHLO client.test\r\n${transaction(body)}`);
    expect(codes(rs).at(-1)).toBe(expected);
    expect(rs.at(-1)).toContain(text);
    expect(h.backend.stored).toEqual([]);
    expect(h.closed).toBe(false);
    expect((await h.send(transaction())).at(-1)).toBe(queued("QID1"));
  });

  test("a 998-octet line is fine", async () => {
    const h = new Harness();
    const rs = await h.send(`EHLO client.test\r\n${transaction(`${"y".repeat(998)}\r\n`)}`);
    expect(rs.at(-1)).toBe(queued("QID1"));
  });

  test.each([
    ["<LF>.<LF>", "\n.\n"],
    ["<CR><LF>.<LF>", "\r\n.\n"],
    ["<LF>.<CR><LF>", "\n.\r\n"],
    ["<CR>.<CR>", "\r.\r"],
  ])("SMTP smuggling with %s: the hidden commands are never run", async (_name, sep) => {
    const h = new Harness();
    const smuggled = `Subject: x\r\n\r\nhi${sep}MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nfake\r\n`;
    const rs = await h.send(`EHLO client.test\r\n${transaction(smuggled)}NOOP\r\n`);
    expect(codes(rs)).toEqual(["250", "250 2.1.0", "250 2.1.5", "354", "550 5.5.0", "250 2.0.0"]);
    expect(h.backend.calls).toEqual(["sender carol@remote.test", "rcpt bob@example.test"]);
  });

  test("DATA taking longer than 600 s in all → 421 4.4.2 and close", async () => {
    const h = new Harness();
    await h.send(`EHLO client.test\r\nMAIL FROM:<c@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n`);
    await h.send("part one\r\n");
    h.now += TIMEOUTS.dataTotal * 1000 + 1;
    expect(codes(await h.send("part two\r\n.\r\n"))).toEqual(["421 4.4.2"]);
    expect(h.closed).toBe(true);
    expect(h.backend.stored).toEqual([]);
  });
});

describe("shutdown", () => {
  test("an idle session is told 421 4.3.2 and closed", async () => {
    const h = new Harness();
    await h.lines("EHLO c");
    h.session.shutdown();
    expect(codes(h.all).at(-1)).toBe("421 4.3.2");
    expect(h.closed).toBe(true);
  });

  test("a commit in progress is answered with its 250 first; pipelined commands behind it are not run", async () => {
    const h = new Harness();
    let release!: () => void;
    h.backend.gate = new Promise((r) => {
      release = r;
    });
    h.session.receive(
      new Uint8Array(
        Buffer.from(
          `EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<${ALICE}>\r\nDATA\r\n${BODY}.\r\nNOOP\r\n`,
          "latin1",
        ),
      ),
    );
    await settle();
    h.session.shutdown();
    expect(h.closed).toBe(false);
    release();
    await settle();
    expect(codes(h.all).slice(-2)).toEqual(["250 2.0.0", "421 4.3.2"]);
    expect(h.all.at(-2)).toContain("queued as");
    expect(h.backend.stored).toHaveLength(1);
    expect(h.closed).toBe(true);
  });
});

describe("closing during a commit", () => {
  test.each([
    ["a timeout", (h: Harness) => h.session.timedOut(), "421 4.4.2"],
    [
      "a flood of pipelined input",
      (h: Harness) => h.session.receive(new Uint8Array(300 * 1024).fill(0x41)),
      "421 4.7.0",
    ],
  ])("%s: the commit is answered 250 first, then the session closes", async (_name, trigger, closing) => {
    const h = new Harness();
    let release!: () => void;
    h.backend.gate = new Promise((r) => {
      release = r;
    });
    await h.send(`EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<${ALICE}>\r\nDATA\r\n${BODY}.\r\n`);
    trigger(h);
    expect(h.closed).toBe(false);
    release();
    await settle();
    expect(codes(h.all).slice(-2)).toEqual(["250 2.0.0", closing]);
    expect(h.closed).toBe(true);
  });
});

describe("command lines", () => {
  test.each([
    ["a 600-octet line", 600, "500 5.5.6"],
    ["a 513-octet line", MAX_COMMAND_OCTETS + 1, "500 5.5.6"],
    ["a 512-octet line", MAX_COMMAND_OCTETS, "250 2.0.0"],
  ])("%s (CRLF included)", async (_name, octets, expected) => {
    const line = `NOOP ${"x".repeat(octets - 7)}\r\n`;
    expect(line.length).toBe(octets);
    for (const pieceSize of [0, 1, 7]) {
      const h = new Harness();
      await h.lines("EHLO client.test");
      expect(codes(await h.send(`${line}NOOP\r\n`, pieceSize))).toEqual([expected, "250 2.0.0"]);
      expect(h.closed).toBe(false);
    }
  });

  test("a long line's tail is never run as a command", async () => {
    const h = new Harness();
    const rs = await h.send(`${"x".repeat(600)} QUIT\r\nNOOP\r\n`);
    expect(codes(rs)).toEqual(["500 5.5.6", "250 2.0.0"]);
    expect(h.closed).toBe(false);
  });

  test.each(["NOOP\0", "MAIL FROM:<a\0@b.test>", "\0"])(
    "NUL in %p → 501 5.5.4; the session goes on",
    async (line) => {
      const h = new Harness();
      await h.lines("EHLO client.test");
      expect(codes(await h.lines(line, "NOOP"))).toEqual(["501 5.5.4", "250 2.0.0"]);
    },
  );

  test.each([
    [
      "a CR smuggling a QUIT into ORCPT's addr-type",
      "RCPT TO:<bob@example.test> ORCPT=rfc822\rQUIT\t<>;a+2Bb",
    ],
    ["a bare CR", "NOOP\rQUIT"],
    ["a TAB", "MAIL\tFROM:<a@b.test>"],
    ["an ESC", "EHLO client\x1b.test"],
    ["a DEL", "NOOP\x7f"],
    ["a CR before the CRLF", "NOOP\r"],
  ])("%s in a command → 501 5.5.4; nothing of it runs, the session goes on", async (_name, line) => {
    const h = new Harness();
    await h.lines("EHLO client.test", "MAIL FROM:<alice@remote.test>");
    const rs = await h.lines(line, "NOOP");
    expect(codes(rs)).toEqual(["501 5.5.4", "250 2.0.0"]);
    expect(rs[0]).toContain("control character");
    expect(h.closed).toBe(false);
    // The transaction saw no recipient: nothing was accepted from the line.
    expect(codes(await h.lines("DATA"))).toEqual(["503 5.5.1"]);
  });

  test("the error limit → the last error, then 421 and close", async () => {
    const h = new Harness({ policy: { maxErrors: 3 } });
    const rs = await h.send("EHLO client.test\r\nFOO\r\nNOOP\r\nRCPT TO:<a@b.test>\r\nBAR\r\nNOOP\r\n");
    expect(codes(rs)).toEqual(["250", "500 5.5.2", "250 2.0.0", "503 5.5.1", "500 5.5.2", "421 4.7.0"]);
    expect(h.closed).toBe(true);
    expect(await h.send("NOOP\r\n")).toEqual([]);
  });
});

describe("events (what metrics count, said by the session rather than read off its replies)", () => {
  const endings = (h: Harness) => h.events.flatMap((e) => (e.kind === "ending" ? [e.why] : []));

  test("QUIT ends with quit; a client that just goes away says nothing", async () => {
    const h = new Harness();
    await h.lines("EHLO client.test", "QUIT");
    expect(h.events).toEqual([{ kind: "ending", why: "quit" }]);
    const gone = new Harness();
    await gone.lines("EHLO client.test");
    expect(gone.events).toEqual([]);
  });

  test("each AUTH failure once; the one past the limit ends with error_limit", async () => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    const wrong = `AUTH PLAIN ${plain(ALICE, "wrong")}`;
    expect(codes(await h.lines("EHLO client.test", wrong, wrong, wrong)).at(-1)).toStartWith("421");
    expect(h.events.filter((e) => e.kind === "auth-failed")).toHaveLength(3);
    expect(endings(h)).toEqual(["error_limit"]);
  });

  test("the error limit, a timeout and a shutdown each say why", async () => {
    const errors = new Harness({ policy: { maxErrors: 2 } });
    await errors.lines("EHLO client.test", "FOO", "BAR");
    expect(endings(errors)).toEqual(["error_limit"]);
    const idle = new Harness();
    idle.session.timedOut();
    expect(endings(idle)).toEqual(["timeout"]);
    const stopping = new Harness();
    stopping.session.shutdown();
    expect(endings(stopping)).toEqual(["shutdown"]);
  });

  test("a fault of ours (421 4.3.0) is no ending of the client's", async () => {
    const h = new Harness({ port: "submission" });
    h.startTlsFails = true;
    expect(codes(await h.lines("EHLO client.test", "STARTTLS")).at(-1)).toBe("421 4.3.0");
    expect(h.closed).toBe(true);
    expect(h.events).toEqual([]);
  });
});

describe("STARTTLS", () => {
  test("pipelined commands behind STARTTLS are thrown away; the state starts again", async () => {
    const h = new Harness();
    const rs = await h.send(
      "EHLO client.test\r\nMAIL FROM:<carol@remote.test>\r\nSTARTTLS\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    );
    expect(codes(rs)).toEqual(["250", "250 2.1.0", "220 2.0.0"]);
    expect(h.tlsRequests).toBe(1);
    expect(await h.send("NOOP\r\n")).toEqual([]); // during the handshake
    h.session.tlsStarted(TLS);
    expect(codes(await h.lines("MAIL FROM:<carol@remote.test>"))).toEqual(["503 5.5.1"]);
    expect(codes(await h.lines("EHLO client.test", "RCPT TO:<bob@example.test>"))).toEqual([
      "250",
      "503 5.5.1",
    ]);
    expect((await h.send(transaction())).at(-1)).toBe(queued("QID1"));
    const { envelope, content } = h.backend.stored[0]!;
    expect(envelope.tls).toEqual(TLS);
    expect(content).toContain(
      "with ESMTPS id QID1\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n",
    );
    expect(h.backend.calls.filter((c) => c.startsWith("rcpt"))).toHaveLength(1);
  });

  test("STARTTLS twice → 503 5.5.1", async () => {
    const h = new Harness();
    await h.lines("EHLO client.test", "STARTTLS");
    h.session.tlsStarted(TLS);
    expect(codes(await h.lines("EHLO client.test", "STARTTLS"))).toEqual(["250", "503 5.5.1"]);
    expect(h.tlsRequests).toBe(1);
  });

  test("without a certificate → 454 4.7.0", async () => {
    const h = new Harness({ policy: { tlsAvailable: false } });
    expect(codes(await h.lines("EHLO client.test", "STARTTLS", "NOOP"))).toEqual([
      "250",
      "454 4.7.0",
      "250 2.0.0",
    ]);
    expect(h.tlsRequests).toBe(0);
  });
});

describe("submission and AUTH", () => {
  test.each<[string, Options, boolean]>([
    ["submission before TLS", { port: "submission" }, false],
    ["submission after STARTTLS", { port: "submission" }, true],
    ["submissions", { port: "submissions", implicitTls: true }, false],
  ])("MAIL before AUTH → 530 5.7.0 (%s)", async (_name, opts, startTls) => {
    const h = new Harness(opts);
    if (startTls) {
      await h.lines("EHLO client.test", "STARTTLS");
      h.session.tlsStarted(TLS);
    }
    expect(codes(await h.lines("EHLO client.test", "MAIL FROM:<alice@example.test>"))).toEqual([
      "250",
      "530 5.7.0",
    ]);
    expect(h.backend.calls).toEqual([]);
  });

  test.each([
    ["a NUL byte", "a\0b"],
    ["a line over 12288 octets", "x".repeat(12300)],
  ])(
    "%s in an AUTH response ends the exchange: the next line is a command again",
    async (_name, response) => {
      const h = new Harness({ port: "submissions", implicitTls: true });
      const rs = await h.lines("EHLO client.test", "AUTH LOGIN", response, "QUIT");
      expect(codes(rs)).toEqual(["250", "334", code(rs[2]!), "221 2.0.0"]);
      expect(rs[2]!.startsWith("5")).toBe(true);
      expect(h.backend.calls).toEqual([]);
    },
  );

  test("an AUTH response longer than a command line (RFC 4954: up to 12288 octets) is read whole", async () => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    const rs = await h.lines("EHLO client.test", `AUTH PLAIN`, plain(ALICE, `${PASSWORD}${"x".repeat(600)}`));
    expect(codes(rs)).toEqual(["250", "334", "535 5.7.8"]);
    expect(h.backend.calls).toEqual([`auth ${ALICE}`]);
  });

  test("AUTH before TLS on submission → 530 5.7.0; nothing is checked", async () => {
    const h = new Harness({ port: "submission" });
    expect(codes(await h.lines("EHLO client.test", `AUTH PLAIN ${plain(ALICE, PASSWORD)}`))).toEqual([
      "250",
      "530 5.7.0",
    ]);
    expect(h.backend.calls).toEqual([]);
  });

  test("a locked-out client's AUTH → 454 4.7.0 even with the right password; not counted as its failure, no delay", async () => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    h.backend.lockedOut.add(CLIENT_IP);
    const rs = await h.lines(
      "EHLO client.test",
      `AUTH PLAIN ${plain(ALICE, PASSWORD)}`,
      `AUTH PLAIN ${plain(ALICE, PASSWORD)}`,
      `AUTH PLAIN ${plain(ALICE, PASSWORD)}`,
      `AUTH PLAIN ${plain(ALICE, PASSWORD)}`,
      "MAIL FROM:<alice@example.test>",
    );
    expect(codes(rs)).toEqual(["250", "454 4.7.0", "454 4.7.0", "454 4.7.0", "454 4.7.0", "530 5.7.0"]);
    expect(rs[1]).toContain("too many failed logins from your address");
    expect(h.delays).toEqual([]);
    expect(h.closed).toBe(false);
  });

  test("AUTH on the MX port, even under TLS → 503 5.5.1; nothing is checked", async () => {
    const h = new Harness({ port: "smtp" });
    await h.lines("EHLO client.test", "STARTTLS");
    h.session.tlsStarted(TLS);
    expect(codes(await h.lines("EHLO client.test", `AUTH PLAIN ${plain(ALICE, PASSWORD)}`))).toEqual([
      "250",
      "503 5.5.1",
    ]);
    expect(h.backend.calls).toEqual([]);
  });

  test.each<[string, string[], string[]]>([
    ["PLAIN with an initial response", [`AUTH PLAIN ${plain(ALICE, PASSWORD)}`], []],
    ["PLAIN, lower-case mechanism", [`auth plain ${plain(ALICE, PASSWORD)}`], []],
    ["PLAIN with the login as authzid", [`AUTH PLAIN ${plain(ALICE, PASSWORD, ALICE)}`], []],
    ["PLAIN with a 334 continuation", ["AUTH PLAIN", plain(ALICE, PASSWORD)], ["334 "]],
    ["LOGIN", ["AUTH LOGIN", b64(ALICE), b64(PASSWORD)], ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"]],
    ["LOGIN with an initial response", [`AUTH LOGIN ${b64(ALICE)}`, b64(PASSWORD)], ["334 UGFzc3dvcmQ6"]],
    [
      "LOGIN with the login in capitals",
      ["AUTH LOGIN", b64(ALICE.toUpperCase()), b64(PASSWORD)],
      ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"],
    ],
  ])("%s → 235 2.7.0", async (_name, dialogue, challenges) => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    await h.lines("EHLO client.test");
    expect(await h.lines(...dialogue)).toEqual([...challenges, "235 2.7.0 Authentication successful"]);
    expect(h.delays).toEqual([]);
    // Authenticated now: a transaction to a remote address is relayed, the envelope names the login.
    const rs = await h.send(
      `MAIL FROM:<${ALICE}>\r\nRCPT TO:<eve@elsewhere.test>\r\nDATA\r\nFrom: ${ALICE}\r\n\r\nhi\r\n.\r\n`,
    );
    expect(rs).toEqual([OK_SENDER, OK_RCPT, GO_AHEAD, queued("QID1")]);
    const { envelope, content } = h.backend.stored[0]!;
    expect(envelope.authUser).toBe(ALICE);
    expect(envelope.port).toBe("submissions");
    expect(envelope.recipients[0]!.target).toEqual({ kind: "mx" });
    expect(content).toContain(`with ESMTPSA id QID1\r\n`);
    expect(content).toContain(`\t(authenticated sender: ${ALICE})\r\n`);
  });

  test.each<[string, string[]]>([
    ["PLAIN at the continuation", ["AUTH PLAIN", "*"]],
    ["LOGIN at the username", ["AUTH LOGIN", "*"]],
    ["LOGIN at the password", ["AUTH LOGIN", b64(ALICE), "*"]],
    ["LOGIN with an initial response, at the password", [`AUTH LOGIN ${b64(ALICE)}`, "*"]],
  ])("'*' cancels (%s) → 501 5.7.0; still not authenticated", async (_name, dialogue) => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    await h.lines("EHLO client.test");
    expect(codes(await h.lines(...dialogue)).at(-1)).toBe("501 5.7.0");
    expect(h.backend.calls).toEqual([]);
    expect(codes(await h.lines(`MAIL FROM:<${ALICE}>`))).toEqual(["530 5.7.0"]);
    expect(codes(await h.lines(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`))).toEqual(["235 2.7.0"]);
  });

  test.each<[string, string, string[]]>([
    ["PLAIN, not base64", "501 5.5.4", ["AUTH PLAIN !!!!"]],
    ["PLAIN, no NULs", "501 5.5.4", [`AUTH PLAIN ${b64("alice password")}`]],
    ["PLAIN, '=' (empty)", "501 5.5.4", ["AUTH PLAIN ="]],
    ["PLAIN continuation, not base64", "501 5.5.4", ["AUTH PLAIN", "%%%%"]],
    ["LOGIN, initial response not base64", "501 5.5.4", ["AUTH LOGIN abc"]],
    ["LOGIN username, not base64", "501 5.5.4", ["AUTH LOGIN", "abc"]],
    ["LOGIN password, not base64", "501 5.5.4", ["AUTH LOGIN", b64(ALICE), "abc"]],
    ["an unknown mechanism", "504 5.5.4", ["AUTH CRAM-MD5"]],
  ])("%s → %s", async (_name, expected, dialogue) => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    await h.lines("EHLO client.test");
    expect(codes(await h.lines(...dialogue)).at(-1)).toBe(expected);
    expect(h.backend.calls).toEqual([]);
    expect(codes(await h.lines("NOOP"))).toEqual(["250 2.0.0"]); // back in command mode
  });

  test("wrong credentials → 535 5.7.8 after growing delays; 421 at the limit", async () => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    await h.lines("EHLO client.test");
    expect(codes(await h.lines(`AUTH PLAIN ${plain(ALICE, "wrong")}`))).toEqual(["535 5.7.8"]);
    expect(h.delays).toEqual([1000]);
    expect(codes(await h.lines("AUTH LOGIN", b64("mallory@example.test"), b64(PASSWORD)))).toEqual([
      "334",
      "334",
      "535 5.7.8",
    ]);
    expect(h.delays).toEqual([1000, 2000]);
    expect(h.closed).toBe(false);
    expect(await h.lines(`AUTH PLAIN ${plain(ALICE, "again wrong")}`)).toEqual([
      "535 5.7.8 Error: authentication credentials invalid",
      "421 4.7.0 Error: too many authentication failures, closing connection",
    ]);
    expect(h.delays).toEqual([1000, 2000, 3000]);
    expect(h.closed).toBe(true);
    expect(await h.send(`AUTH PLAIN ${plain(ALICE, PASSWORD)}\r\n`)).toEqual([]);
  });

  test("a PLAIN authzid naming someone else → 535 5.7.8", async () => {
    const h = new Harness({ port: "submissions", implicitTls: true });
    await h.lines("EHLO client.test");
    expect(codes(await h.lines(`AUTH PLAIN ${plain(ALICE, PASSWORD, "bob@example.test")}`))).toEqual([
      "535 5.7.8",
    ]);
    expect(h.delays).toEqual([1000]);
  });

  test("AUTH once authenticated → 503 5.5.1", async () => {
    const h = await authenticated();
    expect(codes(await h.lines(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`))).toEqual(["503 5.5.1"]);
  });

  test("AUTH during a transaction → 503 5.5.1", async () => {
    const h = new Harness({ port: "submissions", implicitTls: true, policy: {} });
    await h.lines("EHLO client.test", `AUTH PLAIN ${plain(ALICE, PASSWORD)}`, `MAIL FROM:<${ALICE}>`);
    expect(codes(await h.lines("AUTH LOGIN"))).toEqual(["503 5.5.1"]);
  });

  test.each([
    ["her own address", ALICE, "250 2.1.0"],
    ["her own address in capitals", "ALICE@EXAMPLE.TEST", "250 2.1.0"],
    ["the null sender", "", "250 2.1.0"],
    ["someone else's address", "bob@example.test", "553 5.7.1"],
    ["a remote address", "alice@elsewhere.test", "553 5.7.1"],
  ])("an authenticated user sending as %s → %s", async (_name, from, expected) => {
    const h = await authenticated();
    expect(codes(await h.lines(`MAIL FROM:<${from}>`))).toEqual([expected]);
  });
});

describe("BDAT", () => {
  const start = "EHLO client.test\r\nMAIL FROM:<carol@remote.test>\r\nRCPT TO:<bob@example.test>\r\n";

  test("chunks are acknowledged with the octets so far; LAST queues", async () => {
    const h = new Harness();
    await h.send(start);
    expect(await h.send("BDAT 6\r\nhello ")).toEqual(["250 2.0.0 6 octets received"]);
    expect(await h.send("BDAT 7\r\nworld\r\n")).toEqual(["250 2.0.0 13 octets received"]);
    expect(h.backend.stored).toEqual([]);
    expect(await h.send("BDAT 0 LAST\r\n")).toEqual([queued("QID1")]);
    expect(h.backend.stored[0]!.content).toBe(
      `Received: from client.test ([192.0.2.7])\r\n\tby ${HOST} (Postern) with ESMTP id QID1\r\n` +
        `\tfor <bob@example.test>; ${DATE}\r\nhello world\r\n`,
    );
  });

  test("no dot handling: the octets are kept as sent", async () => {
    const h = new Harness();
    const body = "..x\r\n.\r\nQUIT\r\n";
    expect((await h.send(`${start}BDAT ${body.length} LAST\r\n${body}NOOP\r\n`)).slice(-2)).toEqual([
      queued("QID1"),
      "250 2.0.0 Ok",
    ]);
    expect(h.backend.stored[0]!.content).toEndWith(`${DATE}\r\n${body}`);
    expect(h.closed).toBe(false);
  });

  test("chunks trickled in over more than 600 s in all → 421 4.4.2 and close, nothing stored", async () => {
    const h = new Harness();
    await h.send(start);
    expect(await h.send("BDAT 6\r\nhello ")).toEqual(["250 2.0.0 6 octets received"]);
    h.now += TIMEOUTS.dataTotal * 1000 - 1000;
    expect(await h.send("BDAT 2\r\nwo")).toEqual(["250 2.0.0 8 octets received"]);
    h.now += 2000;
    expect(codes(await h.send("BDAT 5 LAST\r\nrld\r\n"))).toEqual(["421 4.4.2"]);
    expect(h.closed).toBe(true);
    expect(h.backend.stored).toEqual([]);
  });

  test("after HELO, BDAT is still ESMTP in the Received header", async () => {
    const h = new Harness();
    await h.send("HELO client.test\r\nMAIL FROM:<c@remote.test>\r\nRCPT TO:<bob@example.test>\r\n");
    expect(await h.send("BDAT 4 LAST\r\nhi\r\n")).toEqual([queued("QID1")]);
    expect(h.backend.stored[0]!.content).toContain("with ESMTP id QID1");
  });

  test("a CR at a chunk's end and the LF at the next one's start is a CRLF", async () => {
    const h = new Harness();
    await h.send(start);
    expect(await h.send("BDAT 4\r\nabc\r")).toEqual(["250 2.0.0 4 octets received"]);
    expect(await h.send("BDAT 6 LAST\r\n\ndef\r\n")).toEqual([queued("QID1")]);
    expect(h.backend.stored[0]!.content).toEndWith(`${DATE}\r\nabc\r\ndef\r\n`);
  });

  test.each([
    ["bare LF", "550 5.5.0", "a\nb\r\n"],
    ["bare CR at the end", "550 5.5.0", "ab\r\nc\r"],
    ["a long line", "500 5.5.6", `${"z".repeat(999)}\r\n`],
    ["over the size limit", "552 5.3.4", "x".repeat(10_001)],
  ])("%s → %s at LAST; the session goes on", async (_name, expected, body) => {
    const h = new Harness();
    expect(codes(await h.send(`${start}BDAT ${body.length} LAST\r\n${body}`)).at(-1)).toBe(expected);
    expect(h.backend.stored).toEqual([]);
    expect((await h.send(transaction())).at(-1)).toBe(queued("QID1"));
  });

  test.each([
    ["without MAIL", "EHLO client.test\r\n"],
    [
      "without an accepted RCPT",
      "EHLO client.test\r\nMAIL FROM:<c@remote.test>\r\nRCPT TO:<x@example.test>\r\n",
    ],
  ])("BDAT %s: its octets are consumed, never run, and it gets 503 5.5.1", async (_name, before) => {
    const h = new Harness();
    await h.send(before);
    const hidden = "QUIT\r\nQUIT\r\n";
    expect(codes(await h.send(`BDAT ${hidden.length}\r\n${hidden}`))).toEqual(["503 5.5.1"]);
    expect(codes(await h.send(`BDAT ${hidden.length} LAST\r\n${hidden}NOOP\r\n`))).toEqual([
      "503 5.5.1",
      "250 2.0.0",
    ]);
    expect(h.closed).toBe(false);
    expect(h.backend.calls.some((c) => c.startsWith("accept"))).toBe(false);
  });

  test("a refused BDAT ends the transaction: later chunks are refused too", async () => {
    const h = new Harness();
    await h.send("EHLO client.test\r\nMAIL FROM:<c@remote.test>\r\nRCPT TO:<x@example.test>\r\n");
    expect(codes(await h.send("BDAT 2\r\nab"))).toEqual(["503 5.5.1"]);
    expect(codes(await h.send("RCPT TO:<bob@example.test>"))).toEqual([]); // no CRLF yet
    expect(codes(await h.send("\r\n"))).toEqual(["503 5.5.1"]);
  });

  test("a BDAT it cannot parse has no known size: 501 and close", async () => {
    const h = new Harness();
    expect(codes(await h.send(`${start}BDAT lots\r\nQUIT\r\n`)).slice(-1)).toEqual(["501 5.5.4"]);
    expect(h.closed).toBe(true);
  });

  test("DATA after BDAT → 503 5.5.1", async () => {
    const h = new Harness();
    await h.send(`${start}BDAT 3\r\nabc`);
    expect(codes(await h.lines("DATA"))).toEqual(["503 5.5.1"]);
  });

  test("a BDAT session split into 1-octet pieces gives the same replies and message", async () => {
    const stream = `${start}BDAT 5\r\nab\r\ncBDAT 3\r\nd\r\nBDAT 4 LAST\r\ne.\r\nNOOP\r\nQUIT\r\n`;
    const whole = new Harness();
    const wholeReplies = await whole.send(stream);
    expect(codes(wholeReplies)).toEqual([
      "250",
      "250 2.1.0",
      "250 2.1.5",
      "250 2.0.0",
      "250 2.0.0",
      "250 2.0.0",
      "250 2.0.0",
      "221 2.0.0",
    ]);
    expect(wholeReplies[5]).toBe(queued("QID1"));
    const split = new Harness();
    expect(await split.send(stream, 1)).toEqual(wholeReplies);
    expect(split.backend.stored).toEqual(whole.backend.stored);
    expect(whole.backend.stored[0]!.content).toEndWith(`${DATE}\r\nab\r\ncd\r\ne.\r\n`);
  });
});

describe("a backend that fails (database or DNS away)", () => {
  const SUBMIT = `MAIL FROM:<${ALICE}>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n${BODY}.\r\nNOOP\r\n`;
  test.each<[BackendStep, string, string[]]>([
    ["authenticate", `AUTH PLAIN ${plain(ALICE, PASSWORD)}\r\nNOOP\r\n`, ["454 4.7.0", "250 2.0.0"]],
    // DATA is refused, so the message's lines are read as commands: each gets its own reply
    [
      "checkSender",
      SUBMIT,
      ["451 4.3.0", "503 5.5.1", "503 5.5.1", ...Array(4).fill("500 5.5.2"), "250 2.0.0"],
    ],
    [
      "checkRecipient",
      SUBMIT,
      ["250 2.1.0", "451 4.3.0", "503 5.5.1", ...Array(4).fill("500 5.5.2"), "250 2.0.0"],
    ],
    ["accept", SUBMIT, ["250 2.1.0", "250 2.1.5", "354", "451 4.3.0", "250 2.0.0"]],
  ])(
    "%p throwing → a 4xx for that step, and the next pipelined command gets its own reply",
    async (step, input, expected) => {
      const h = new Harness({ port: "submission", implicitTls: true });
      if (step !== "authenticate") await h.lines("EHLO client.test", `AUTH PLAIN ${plain(ALICE, PASSWORD)}`);
      else await h.lines("EHLO client.test");
      h.backend.failing.add(step);
      expect(codes(await h.send(input))).toEqual(expected);
      expect(h.faults).toHaveLength(1);
      expect(String(h.faults[0])).toContain("ECONNREFUSED");
      expect(h.closed).toBe(false);
      expect(h.backend.stored).toEqual([]);
      // the backend is back: the same session goes on as if nothing happened
      h.backend.failing.clear();
      if (step === "authenticate") {
        expect(codes(await h.lines(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`))).toEqual(["235 2.7.0"]);
      }
      expect(codes(await h.send(SUBMIT)).at(-2)).toBe("250 2.0.0");
      expect(h.backend.stored).toHaveLength(1);
    },
  );

  test("BDAT's last chunk with accept() throwing → 451 4.3.0; the session goes on", async () => {
    const h = new Harness();
    await h.lines("EHLO client.test");
    h.backend.failing.add("accept");
    const replies = await h.send(
      `MAIL FROM:<carol@remote.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT ${BODY.length} LAST\r\n${BODY}NOOP\r\n`,
    );
    expect(codes(replies)).toEqual(["250 2.1.0", "250 2.1.5", "451 4.3.0", "250 2.0.0"]);
    expect(h.closed).toBe(false);
  });

  test("backend failures are not the client's errors: more of them than the error limit do not close", async () => {
    const h = new Harness({ policy: { maxErrors: 3 } });
    await h.lines("EHLO client.test", "MAIL FROM:<carol@remote.test>");
    h.backend.failing.add("checkRecipient");
    const replies = await h.send("RCPT TO:<bob@example.test>\r\n".repeat(5));
    expect(codes(replies)).toEqual(Array(5).fill("451 4.3.0"));
    expect(h.closed).toBe(false);
  });

  test("a step failing for any other reason → 421 4.3.0 and close; nothing after it runs", async () => {
    const h = new Harness();
    await h.lines("EHLO client.test");
    h.startTlsFails = true;
    const replies = await h.send("STARTTLS\r\nNOOP\r\n");
    expect(codes(replies)).toEqual(["220 2.0.0", "421 4.3.0"]);
    expect(h.closed).toBe(true);
    expect(String(h.faults[0])).toContain("upgrade blew up");
  });
});
