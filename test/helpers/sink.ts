// An in-process SMTP/LMTP sink for tests: a small server of our own on Bun.listen (loopback,
// random port) whose behaviour each test scripts, and which records everything it is sent.
//
//   const sink = await SmtpSink.start({ starttls: true, size: 1000 });
//   ... deliver to 127.0.0.1:sink.port ...
//   const [msg] = await sink.waitForMessages(1);
//   expect(msg.tls).toBe(true); expect(text(msg.data)).toBe("...");
//   await sink.stop();
//
// `sink.behaviour` may be changed between connections or transactions (e.g. tempfail first,
// then accept), which is what scheduler tests need. Replies are given as raw text: one line
// "550 5.1.1 No such user", or several "250-a\n250 b"; the sink adds the CRLFs. Garbage goes out
// as it is, so a test can send a client anything.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { decodeBase64 } from "../../src/auth/sasl.ts";
import { loadTlsMaterial, type TlsMaterial } from "../../src/net/tls.ts";
import { SocketWriter } from "../../src/net/writer.ts";
import { parseCommand } from "../../src/smtp/command.ts";
import { concat, MessageDecoder } from "../../src/smtp/data.ts";

export type SinkMode =
  /** Everything accepted. */
  | "accept"
  /** 451 at RCPT. */
  | "tempfail-rcpt"
  /** 451 after the data. */
  | "tempfail-data"
  /** 550 at RCPT. */
  | "permfail-rcpt"
  /** 554 after the data. */
  | "permfail-data"
  /** Accept the connection and never answer. */
  | "hang"
  /** Greet with 421 and close. */
  | "greeting-421"
  /** Greet with 554 and close. */
  | "greeting-554";

/** Where `hangAt` / `dropAt` strike: the greeting, or the reply to that command ("dot": end of data). */
export type SinkStage =
  | "greeting"
  | "ehlo"
  | "starttls"
  | "auth"
  | "mail"
  | "rcpt"
  | "data"
  | "dot"
  | "rset"
  | "quit";

export interface SinkBehaviour {
  mode: SinkMode;
  /** LMTP: LHLO instead of EHLO/HELO, one reply per accepted recipient after the data. */
  lmtp: boolean;
  /** false: EHLO gets 502 (an old server; the client must fall back to HELO). */
  esmtp: boolean;
  pipelining: boolean;
  /** Offer STARTTLS (a self-signed certificate, made once per test process). */
  starttls: boolean;
  eightBitMime: boolean;
  smtputf8: boolean;
  dsn: boolean;
  enhancedStatusCodes: boolean;
  /** Advertise "SIZE n" and refuse MAIL with a larger SIZE= (552 5.3.4); undefined: no SIZE. */
  size: number | undefined;
  /**
   * Require AUTH (PLAIN and LOGIN offered; after TLS when `starttls`): MAIL before it gets
   * 530 5.7.0, wrong credentials 535 5.7.8.
   */
  auth: { username: string; password: string } | undefined;
  /** The mechanisms advertised with `auth` (PLAIN and LOGIN work; others are refused with 504). */
  authMechanisms: string[];
  /** Never answer at this point (the connection stays open). */
  hangAt: SinkStage | undefined;
  /** After the 354 to DATA, stop reading the socket (TCP backpressure on the client). */
  stallData: boolean;
  /** Close the connection at this point without answering. */
  dropAt: SinkStage | undefined;
  /** The reply to one RCPT; undefined: the mode's. */
  rcptReply: ((address: string, tx: SinkTransaction) => string | undefined) | undefined;
  /**
   * The reply after the data: for SMTP called once (`recipient` undefined), for LMTP once per
   * accepted recipient. undefined: the mode's.
   */
  dataReply: ((tx: SinkTransaction, recipient: string | undefined) => string | undefined) | undefined;
  /** Name in the greeting and the EHLO reply. */
  hostname: string;
}

export interface SinkRecipient {
  address: string;
  /** Parameters as sent, e.g. ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a@b"]. */
  params: string[];
  /** The reply the sink gave. */
  reply: string;
}

export interface SinkTransaction {
  /** Which connection (1 for the first the sink accepted). */
  connection: number;
  tls: boolean;
  helo: string;
  authUser: string | undefined;
  mailFrom: string;
  /** Parameters as sent, e.g. ["SIZE=123", "BODY=8BITMIME"]. */
  mailParams: string[];
  /** Every RCPT, refused ones too, with the reply. */
  rcpts: SinkRecipient[];
  /** The accepted recipients' addresses. */
  recipients: string[];
  /** The content after dot-unstuffing (the CRLF before the final dot included); undefined before the data. */
  data: Uint8Array | undefined;
  /** The content held a bare LF / bare CR (a client must never send one). */
  bareLf: boolean;
  bareCr: boolean;
  /** The replies given after the data (one, or one per recipient for LMTP). */
  dataReplies: string[];
  /** MAIL, every RCPT and DATA arrived in one read (a pipelining client's one write). */
  pipelined: boolean;
  /** At least one 2xx after the data: the message counts as received. */
  delivered: boolean;
}

export interface SinkConnection {
  id: number;
  remoteAddress: string;
  tls: boolean;
  /** Command lines as received (AUTH responses hidden). */
  commands: string[];
  closed: boolean;
}

export interface SinkStartOptions extends Partial<SinkBehaviour> {
  /** "127.0.0.1" (default) or "::1". */
  host?: string;
  /** 0 (default): a free port. */
  port?: number;
}

const DEFAULTS: SinkBehaviour = {
  mode: "accept",
  lmtp: false,
  esmtp: true,
  pipelining: true,
  starttls: false,
  eightBitMime: true,
  smtputf8: true,
  dsn: true,
  enhancedStatusCodes: true,
  size: undefined,
  auth: undefined,
  authMechanisms: ["PLAIN", "LOGIN"],
  hangAt: undefined,
  dropAt: undefined,
  stallData: false,
  rcptReply: undefined,
  dataReply: undefined,
  hostname: "sink.test",
};

let tlsMaterial: Promise<TlsMaterial> | undefined;

/** One self-signed certificate per test process. */
export function sinkTlsMaterial(): Promise<TlsMaterial> {
  tlsMaterial ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "postern-sink-tls-"));
    try {
      return await loadTlsMaterial({
        dataDir: dir,
        hostname: "sink.test",
        tlsCert: undefined,
        tlsKey: undefined,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  return tlsMaterial;
}

const LF = 10;
const MAX_LINE = 4096;
const utf8 = new TextDecoder("utf-8");

type Mode =
  | { kind: "command" }
  | { kind: "data"; decoder: MessageDecoder }
  | { kind: "authPlain" }
  | { kind: "authLoginUser" }
  | { kind: "authLoginPass"; username: string }
  | { kind: "hang" }
  | { kind: "closed" };

interface Conn {
  record: SinkConnection;
  writer: SocketWriter;
  socket: Socket<SocketData>;
  input: Uint8Array;
  mode: Mode;
  helo: string | undefined;
  tls: boolean;
  authUser: string | undefined;
  tx: SinkTransaction | undefined;
  /** Which read the MAIL / RCPT / DATA of the current transaction came in. */
  txReads: Set<number>;
  reads: number;
}

interface SocketData {
  conn: Conn | undefined;
  /** The plain socket after STARTTLS: it still sees the ciphertext, which it must ignore. */
  superseded: boolean;
}

export class SmtpSink {
  readonly behaviour: SinkBehaviour;
  readonly connections: SinkConnection[] = [];
  /** Every transaction begun with an accepted MAIL. */
  readonly transactions: SinkTransaction[] = [];
  /** Transactions whose data got a 2xx (for LMTP: for at least one recipient). */
  readonly messages: SinkTransaction[] = [];
  private readonly open = new Set<Conn>();
  private listener!: TCPSocketListener<SocketData>;
  private waiters: (() => void)[] = [];
  private tls: TlsMaterial | undefined;

  private constructor(behaviour: SinkBehaviour) {
    this.behaviour = behaviour;
  }

  static async start(opts: SinkStartOptions = {}): Promise<SmtpSink> {
    const { host = "127.0.0.1", port = 0, ...rest } = opts;
    const behaviour: SinkBehaviour = { ...DEFAULTS };
    for (const [k, v] of Object.entries(rest))
      if (v !== undefined) (behaviour as unknown as Record<string, unknown>)[k] = v;
    const sink = new SmtpSink(behaviour);
    if (behaviour.starttls || behaviour.auth) sink.tls = await sinkTlsMaterial();
    sink.listen(host, port);
    return sink;
  }

  get host(): string {
    return this.listener.hostname;
  }

  get port(): number {
    return this.listener.port;
  }

  /** How many connections the sink accepted so far. */
  get connectionCount(): number {
    return this.connections.length;
  }

  /** Every command line received on every connection, in order per connection. */
  get commands(): string[] {
    return this.connections.flatMap((c) => c.commands);
  }

  /** Resolves with the received messages once there are at least `n`. */
  async waitForMessages(n: number, timeoutMs = 5000): Promise<SinkTransaction[]> {
    await this.waitUntil(
      () => this.messages.length >= n,
      timeoutMs,
      () => `${n} messages (have ${this.messages.length})`,
    );
    return this.messages.slice();
  }

  /** Resolves once at least `n` connections were accepted. */
  async waitForConnections(n: number, timeoutMs = 5000): Promise<void> {
    await this.waitUntil(
      () => this.connections.length >= n,
      timeoutMs,
      () => `${n} connections`,
    );
  }

  /** Resolves once every accepted connection is closed. */
  async waitForIdle(timeoutMs = 5000): Promise<void> {
    await this.waitUntil(
      () => this.open.size === 0,
      timeoutMs,
      () => `all connections closed (${this.open.size} open)`,
    );
  }

  /** Forgets what was recorded (the behaviour stays). */
  reset(): void {
    this.connections.length = 0;
    this.transactions.length = 0;
    this.messages.length = 0;
  }

  /** Stops listening and drops every connection. */
  async stop(): Promise<void> {
    this.listener.stop(true);
    for (const c of this.open) c.socket.terminate();
    this.open.clear();
    this.notify();
  }

  private async waitUntil(cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`sink: timed out after ${timeoutMs} ms waiting for ${what()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private notify(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  // --- the server ---

  private listen(host: string, port: number): void {
    const sink = this;
    const handlers = {
      data(socket: Socket<SocketData>, chunk: Uint8Array) {
        const conn = socket.data.conn;
        if (socket.data.superseded || !conn) return;
        sink.receive(conn, chunk);
      },
      drain(socket: Socket<SocketData>) {
        if (!socket.data.superseded) socket.data.conn?.writer.drain();
      },
      close(socket: Socket<SocketData>) {
        const conn = socket.data.conn;
        if (socket.data.superseded || !conn) return;
        conn.mode = { kind: "closed" };
        conn.record.closed = true;
        sink.open.delete(conn);
        sink.notify();
      },
      error() {},
    };
    this.listener = Bun.listen<SocketData>({
      hostname: host,
      port,
      socket: {
        ...handlers,
        open(socket) {
          socket.data = { conn: undefined, superseded: false };
          sink.accept(socket);
        },
      },
    });
    this.tlsHandlers = {
      ...handlers,
      handshake(socket: Socket<SocketData>) {
        const conn = socket.data.conn;
        if (!conn) return;
        conn.socket = socket;
        conn.tls = true;
        conn.record.tls = true;
        conn.mode = { kind: "command" };
        conn.input = new Uint8Array(0);
      },
    };
  }

  private tlsHandlers: object = {};

  private accept(socket: Socket<SocketData>): void {
    const record: SinkConnection = {
      id: this.connections.length + 1,
      remoteAddress: socket.remoteAddress,
      tls: false,
      commands: [],
      closed: false,
    };
    this.connections.push(record);
    const conn: Conn = {
      record,
      writer: new SocketWriter(socket as Socket<unknown>),
      socket,
      input: new Uint8Array(0),
      mode: { kind: "command" },
      helo: undefined,
      tls: false,
      authUser: undefined,
      tx: undefined,
      txReads: new Set(),
      reads: 0,
    };
    socket.data.conn = conn;
    this.open.add(conn);
    this.notify();
    const b = this.behaviour;
    if (b.mode === "greeting-421" || b.mode === "greeting-554") {
      const code = b.mode === "greeting-421" ? "421 4.3.2" : "554 5.7.1";
      this.send(conn, `${code} ${b.hostname} Service not available`);
      this.close(conn);
      return;
    }
    if (b.mode === "hang" || this.interrupts(conn, "greeting")) return;
    this.send(conn, `220 ${b.hostname} ESMTP sink`);
  }

  /** hangAt / dropAt: true when the stage is one of them (the sink then does not answer). */
  private interrupts(conn: Conn, stage: SinkStage): boolean {
    const b = this.behaviour;
    if (b.dropAt === stage) {
      this.close(conn);
      return true;
    }
    if (b.hangAt === stage) {
      conn.mode = { kind: "hang" };
      return true;
    }
    return false;
  }

  private send(conn: Conn, reply: string): void {
    if (conn.mode.kind === "closed") return;
    conn.writer.write(`${reply.replace(/\r?\n/g, "\r\n")}\r\n`);
  }

  private close(conn: Conn): void {
    if (conn.mode.kind === "closed") return;
    conn.mode = { kind: "closed" };
    conn.writer.end();
  }

  private receive(conn: Conn, chunk: Uint8Array): void {
    if (conn.mode.kind === "closed" || conn.mode.kind === "hang") return;
    conn.reads++;
    conn.input = conn.input.length === 0 ? chunk.slice() : concat([conn.input, chunk.slice()]);
    this.pump(conn);
  }

  private pump(conn: Conn): void {
    for (;;) {
      const mode = conn.mode;
      if (mode.kind === "closed" || mode.kind === "hang") return;
      if (mode.kind === "data") {
        const end = mode.decoder.push(conn.input);
        if (end < 0) {
          conn.input = new Uint8Array(0);
          return;
        }
        conn.input = conn.input.subarray(end);
        conn.mode = { kind: "command" };
        this.endOfData(conn, mode.decoder);
        continue;
      }
      const lf = conn.input.indexOf(LF);
      if (lf < 0) {
        if (conn.input.length > MAX_LINE) {
          this.send(conn, "500 5.5.6 Error: line too long");
          this.close(conn);
        }
        return;
      }
      const line = utf8.decode(conn.input.subarray(0, lf)).replace(/\r$/, "");
      conn.input = conn.input.subarray(lf + 1);
      if (mode.kind === "command") this.command(conn, line);
      else this.authLine(conn, mode, line);
    }
  }

  private command(conn: Conn, line: string): void {
    const b = this.behaviour;
    const verb = (line.split(" ")[0] ?? "").toUpperCase();
    conn.record.commands.push(verb === "AUTH" ? line.split(" ").slice(0, 2).join(" ") : line);
    const ok = (text: string) =>
      b.enhancedStatusCodes ? text : text.replace(/^(\d{3}[ -])\d\.\d{1,3}\.\d{1,3} /, "$1");
    switch (verb) {
      case "EHLO":
      case "HELO":
      case "LHLO": {
        if (this.interrupts(conn, "ehlo")) return;
        const arg = line.slice(5).trim();
        if (b.lmtp !== (verb === "LHLO"))
          return this.send(conn, ok("500 5.5.2 Error: command not recognized"));
        if (verb === "EHLO" && !b.esmtp)
          return this.send(conn, ok("502 5.5.2 Error: command not implemented"));
        conn.helo = arg;
        conn.tx = undefined;
        if (verb === "HELO") return this.send(conn, `250 ${b.hostname}`);
        const ext: string[] = [];
        if (b.pipelining) ext.push("PIPELINING");
        if (b.size !== undefined) ext.push(b.size > 0 ? `SIZE ${b.size}` : "SIZE");
        if (b.eightBitMime) ext.push("8BITMIME");
        if (b.smtputf8) ext.push("SMTPUTF8");
        if (b.dsn) ext.push("DSN");
        if (b.enhancedStatusCodes) ext.push("ENHANCEDSTATUSCODES");
        if (b.starttls && !conn.tls) ext.push("STARTTLS");
        if (b.auth && (conn.tls || !b.starttls)) ext.push(`AUTH ${b.authMechanisms.join(" ")}`);
        const lines = [b.hostname, ...ext];
        return this.send(
          conn,
          lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}`).join("\n"),
        );
      }
      case "STARTTLS": {
        if (this.interrupts(conn, "starttls")) return;
        if (!b.starttls || conn.tls || !this.tls)
          return this.send(conn, ok("502 5.5.1 Error: STARTTLS not offered"));
        this.send(conn, ok("220 2.0.0 Ready to start TLS"));
        this.startTls(conn);
        return;
      }
      case "AUTH": {
        if (this.interrupts(conn, "auth")) return;
        const [, mech, initial] = line.split(" ");
        if (!b.auth) return this.send(conn, ok("502 5.5.1 Error: AUTH not offered"));
        if (conn.authUser) return this.send(conn, ok("503 5.5.1 Error: already authenticated"));
        const offered = b.authMechanisms.map((m) => m.toUpperCase());
        if (mech?.toUpperCase() === "PLAIN" && offered.includes("PLAIN")) {
          if (initial === undefined) {
            conn.mode = { kind: "authPlain" };
            return this.send(conn, "334 ");
          }
          return this.checkPlain(conn, initial);
        }
        if (mech?.toUpperCase() === "LOGIN" && offered.includes("LOGIN")) {
          conn.mode = { kind: "authLoginUser" };
          return this.send(conn, "334 VXNlcm5hbWU6");
        }
        return this.send(conn, ok("504 5.5.4 Error: unrecognized authentication type"));
      }
      case "MAIL": {
        if (this.interrupts(conn, "mail")) return;
        if (!conn.helo) return this.send(conn, ok("503 5.5.1 Error: send HELO/EHLO first"));
        if (conn.tx) return this.send(conn, ok("503 5.5.1 Error: nested MAIL command"));
        if (b.auth && !conn.authUser) return this.send(conn, ok("530 5.7.0 Error: authentication required"));
        const parsed = parseCommand(line);
        if (!parsed.ok)
          return this.send(
            conn,
            `${parsed.reply.code} ${parsed.reply.status} ${parsed.reply.lines.join(" ")}`,
          );
        if (parsed.command.verb !== "MAIL") return;
        if (b.size && (parsed.command.params.size ?? 0) > b.size) {
          return this.send(conn, ok("552 5.3.4 Error: message exceeds fixed maximum message size"));
        }
        conn.txReads = new Set([conn.reads]);
        conn.tx = {
          connection: conn.record.id,
          tls: conn.tls,
          helo: conn.helo,
          authUser: conn.authUser,
          mailFrom: parsed.command.address,
          mailParams: params(line),
          rcpts: [],
          recipients: [],
          data: undefined,
          bareLf: false,
          bareCr: false,
          dataReplies: [],
          pipelined: false,
          delivered: false,
        };
        this.transactions.push(conn.tx);
        return this.send(conn, ok("250 2.1.0 Ok"));
      }
      case "RCPT": {
        if (this.interrupts(conn, "rcpt")) return;
        const tx = conn.tx;
        if (!tx) return this.send(conn, ok("503 5.5.1 Error: need MAIL command"));
        conn.txReads.add(conn.reads);
        const parsed = parseCommand(line);
        if (!parsed.ok)
          return this.send(
            conn,
            `${parsed.reply.code} ${parsed.reply.status} ${parsed.reply.lines.join(" ")}`,
          );
        if (parsed.command.verb !== "RCPT") return;
        const address = parsed.command.address;
        const reply =
          b.rcptReply?.(address, tx) ??
          (b.mode === "tempfail-rcpt"
            ? "451 4.3.0 Error: try again later"
            : b.mode === "permfail-rcpt"
              ? "550 5.1.1 Error: no such user"
              : "250 2.1.5 Ok");
        tx.rcpts.push({ address, params: params(line), reply });
        if (reply.startsWith("2")) tx.recipients.push(address);
        return this.send(conn, ok(reply));
      }
      case "DATA": {
        if (this.interrupts(conn, "data")) return;
        const tx = conn.tx;
        if (!tx) return this.send(conn, ok("503 5.5.1 Error: need RCPT command"));
        conn.txReads.add(conn.reads);
        tx.pipelined = conn.txReads.size === 1;
        if (tx.recipients.length === 0) return this.send(conn, ok("554 5.5.1 Error: no valid recipients"));
        conn.mode = { kind: "data", decoder: new MessageDecoder(2 ** 31, true) };
        this.send(conn, "354 End data with <CR><LF>.<CR><LF>");
        if (b.stallData) {
          conn.mode = { kind: "hang" };
          conn.socket.pause();
        }
        return;
      }
      case "RSET":
        if (this.interrupts(conn, "rset")) return;
        conn.tx = undefined;
        return this.send(conn, ok("250 2.0.0 Ok"));
      case "NOOP":
        return this.send(conn, ok("250 2.0.0 Ok"));
      case "QUIT":
        if (this.interrupts(conn, "quit")) return;
        this.send(conn, ok("221 2.0.0 Bye"));
        return this.close(conn);
      default:
        return this.send(conn, ok("500 5.5.2 Error: command not recognized"));
    }
  }

  private endOfData(conn: Conn, decoder: MessageDecoder): void {
    const tx = conn.tx!;
    conn.tx = undefined;
    const r = decoder.result();
    tx.data = concat(r.chunks).slice();
    tx.bareLf = r.bareLf;
    tx.bareCr = r.bareCr;
    if (this.interrupts(conn, "dot")) return;
    const b = this.behaviour;
    const fallback =
      b.mode === "tempfail-data"
        ? "451 4.3.0 Error: try again later"
        : b.mode === "permfail-data"
          ? "554 5.6.0 Error: message rejected"
          : `250 2.0.0 Ok: queued as ${this.transactions.indexOf(tx) + 1}`;
    const targets = b.lmtp ? tx.recipients : [undefined];
    for (const rcpt of targets) {
      const reply = b.dataReply?.(tx, rcpt) ?? fallback;
      tx.dataReplies.push(reply);
      if (reply.startsWith("2")) tx.delivered = true;
      this.send(conn, reply);
    }
    if (tx.delivered) this.messages.push(tx);
    this.notify();
  }

  private authLine(conn: Conn, mode: Mode, line: string): void {
    conn.record.commands.push("(auth response)");
    if (line === "*") {
      conn.mode = { kind: "command" };
      return this.send(conn, "501 5.7.0 Authentication cancelled");
    }
    if (mode.kind === "authPlain") {
      conn.mode = { kind: "command" };
      return this.checkPlain(conn, line);
    }
    if (mode.kind === "authLoginUser") {
      conn.mode = { kind: "authLoginPass", username: decodeBase64(line) ?? "" };
      return this.send(conn, "334 UGFzc3dvcmQ6");
    }
    if (mode.kind === "authLoginPass") {
      conn.mode = { kind: "command" };
      return this.checkCredentials(conn, mode.username, decodeBase64(line) ?? "");
    }
  }

  private checkPlain(conn: Conn, response: string): void {
    const parts = (decodeBase64(response) ?? "").split("\0");
    this.checkCredentials(conn, parts[1] ?? "", parts[2] ?? "");
  }

  private checkCredentials(conn: Conn, username: string, password: string): void {
    const want = this.behaviour.auth;
    if (want && username === want.username && password === want.password) {
      conn.authUser = username;
      return this.send(conn, "235 2.7.0 Authentication successful");
    }
    this.send(conn, "535 5.7.8 Error: authentication credentials invalid");
  }

  private startTls(conn: Conn): void {
    // RFC 3207: whatever the client pipelined behind STARTTLS is thrown away.
    conn.input = new Uint8Array(0);
    conn.mode = { kind: "hang" }; // until the handshake is done
    conn.helo = undefined;
    conn.tx = undefined;
    const plain = conn.socket;
    plain.data.superseded = true;
    // Let the 220 go out before the handshake begins.
    const [, secure] = plain.upgradeTLS<SocketData>({
      data: { conn, superseded: false },
      tls: this.tls!,
      socket: this.tlsHandlers as Parameters<typeof plain.upgradeTLS<SocketData>>[0]["socket"],
    });
    conn.writer.retarget(secure as Socket<unknown>);
    conn.socket = secure;
  }
}

function params(line: string): string[] {
  const close = line.lastIndexOf(">");
  return line
    .slice(close + 1)
    .split(" ")
    .filter(Boolean);
}

/** Bytes as a binary string (one char per octet), for readable assertions. */
export function latin1(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString("latin1") : "";
}
