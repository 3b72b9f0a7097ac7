// The outbound SMTP/LMTP client: one connection to one server, one or more transactions on it.
// It speaks the protocol and reports what the server said per recipient; what to do with a
// reply (deliver, retry, bounce) is the caller's business.
//
// It is handed a connected stream (delivery/dial.ts dials TCP and upgrades to TLS; tests hand it
// one end of an in-memory pair): write() queues what the other side does not take at once and
// says when to wait for `drain`, which is the backpressure DATA needs. Every wait is bounded
// (RFC 5321 4.5.3.2 defaults) by one helper, withTimeout. A timeout, a lost connection or a
// reply we cannot read mid-transaction rejects with SmtpClientError and leaves the connection
// unusable.
import { isIP } from "node:net";
import { encodeBase64 } from "../auth/sasl.ts";
import { has8bit, isSendableAddress, mailCommand, needsSmtputf8, rcptCommand } from "./client-message.ts";
import {
  formatClientReply,
  parseExtensions,
  plainReply,
  type Reply,
  ReplyParser,
  ReplySyntaxError,
  sizeLimit,
  syntheticReply,
  type WireReply,
} from "./client-replies.ts";
import { type ClientStream, type StartTls, type TlsClientStream, withTimeout } from "./client-stream.ts";
import { encodeData, normalizedSize } from "./dotstuff.ts";

export type { Reply } from "./client-replies.ts";

export interface ClientTimeouts {
  /** TCP connect. */
  connect: number;
  /** The 220 greeting. */
  greeting: number;
  /** EHLO, STARTTLS (and its handshake), AUTH, RSET, MAIL, RCPT replies. */
  command: number;
  /** The 354 to DATA (RFC: 2 min; at most `command` when only that is given). */
  dataStart: number;
  /** Each wait for the socket to take the next piece of the message. */
  dataBlock: number;
  /** The reply(ies) after the final dot. */
  dataEnd: number;
}

/** RFC 5321 4.5.3.2 defaults, ms; connect is ours. */
export const CLIENT_TIMEOUTS: ClientTimeouts = {
  connect: 30_000,
  greeting: 300_000,
  command: 300_000,
  dataStart: 120_000,
  dataBlock: 180_000,
  dataEnd: 600_000,
};

/** QUIT is a courtesy: never wait long for its 221. */
const QUIT_TIMEOUT_MS = 10_000;
/** Replies read ahead of the commands waiting for them (a pipelined transaction: MAIL, RCPTs, DATA). */
const MAX_QUEUED_REPLIES = 1100;

export interface ClientOptions {
  /** Server name (for logs, `remote` and TLS SNI) or IP address. */
  host: string;
  port: number;
  /** The address to connect to, when the caller has resolved `host` itself (no DNS look-up here). */
  ip?: string;
  /** Our name for EHLO/LHLO. */
  helo: string;
  /**
   * "opportunistic": STARTTLS when offered, plain otherwise; "required": STARTTLS or no session
   * (MTA-STS); "none": never. The client only reports whether the certificate verified
   * (`tls.verified`, judged by `startTls`): what follows from that is the caller's policy.
   */
  tls: "opportunistic" | "required" | "none";
  /** AUTH PLAIN (or LOGIN if only that is offered); only ever sent over TLS. */
  auth?: { username: string; password: string };
  /** LHLO and one reply per accepted recipient after the data (RFC 2033). */
  lmtp?: boolean;
  /** ms; defaults in CLIENT_TIMEOUTS. */
  timeouts?: Partial<ClientTimeouts>;
  /** How STARTTLS upgrades the stream (needed with tls "opportunistic" when offered). */
  startTls?: StartTls;
}

export interface TlsSessionInfo {
  protocol: string;
  cipher: string;
  /** The certificate chain is trusted and names the host we asked for. */
  verified: boolean;
  /** Why not, as node:tls says it (e.g. ERR_TLS_CERT_ALTNAME_INVALID, CERT_HAS_EXPIRED). */
  verifyError: string | undefined;
}

export interface OutboundEnvelope {
  /** "" for the null sender. */
  mailFrom: string;
  recipients: { address: string; notify?: string; orcpt?: string }[];
  envid?: string;
  ret?: "FULL" | "HDRS";
  /** The message as stored (CRLF lines normally; may hold bare LF). */
  data: Uint8Array;
}

export interface TransactionResult {
  /**
   * One per recipient, same order: the RCPT reply if it was refused, else the DATA reply (for
   * LMTP: that recipient's reply after the data). Replies we made up (SIZE, SMTPUTF8, bad
   * address) have the same shape.
   */
  recipients: { address: string; reply: Reply }[];
}

export type SmtpClientErrorKind = "connect" | "timeout" | "greeting" | "protocol" | "closed" | "tls" | "auth";

/** Where in the conversation something went wrong. */
export type ClientPhase =
  | "connect"
  | "greeting"
  | "ehlo"
  | "starttls"
  | "tls"
  | "auth"
  | "rset"
  | "mail"
  | "rcpt"
  | "data"
  | "message"
  | "dot"
  | "quit"
  | "idle";

const PHASE_TEXT: Record<ClientPhase, string> = {
  connect: "while connecting",
  greeting: "while waiting for the greeting",
  ehlo: "after EHLO",
  starttls: "after STARTTLS",
  tls: "during the TLS handshake",
  auth: "during AUTH",
  rset: "after RSET",
  mail: "after MAIL FROM",
  rcpt: "after RCPT TO",
  data: "after DATA",
  message: "while sending the message",
  dot: "after end of data",
  quit: "after QUIT",
  idle: "while idle",
};

/**
 * kind "connect": not reached (refused, unreachable); "timeout": no answer in time (phase says
 * where); "greeting": a 4xx/5xx greeting (`reply`); "protocol": a reply we cannot read, or an
 * unexpected one (`reply` then says what, e.g. a 421 or 5xx to EHLO/HELO); "closed": the
 * connection was lost; "tls": the TLS handshake failed; "auth": AUTH refused (`reply`) or not
 * possible (no TLS, no common mechanism).
 */
export class SmtpClientError extends Error {
  override readonly name = "SmtpClientError";
  constructor(
    readonly kind: SmtpClientErrorKind,
    message: string,
    readonly phase: ClientPhase,
    readonly reply?: Reply,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

type Waiter<T> = { resolve: (v: T) => void; reject: (e: Error) => void };

export class SmtpClientConnection {
  private parser = new ReplyParser();
  private replies: WireReply[] = [];
  private replyWaiter: Waiter<WireReply> | undefined;
  private drainWaiter: Waiter<void> | undefined;
  private failure: SmtpClientError | undefined;
  private phase: ClientPhase = "greeting";
  private ext = new Map<string, string>();
  private tlsInfo: TlsSessionInfo | undefined;
  /** A transaction was started and not ended by the reply to the final dot. */
  private needRset = false;
  /** The server said 421 during this transaction: it is closing; no more reads or writes. */
  private closingReply: WireReply | undefined;
  private busy = false;
  readonly remote: string;
  private readonly t: ClientTimeouts;

  private readonly onData = (chunk: Buffer) => this.received(chunk);
  private readonly onDrain = () => {
    const w = this.drainWaiter;
    this.drainWaiter = undefined;
    w?.resolve();
  };
  private readonly onError = (err: Error) =>
    this.fail(
      new SmtpClientError(
        "closed",
        `connection with ${this.remote} failed ${PHASE_TEXT[this.phase]}: ${err.message}`,
        this.phase,
        undefined,
        { cause: err },
      ),
    );
  private readonly onClose = () =>
    this.fail(
      new SmtpClientError(
        "closed",
        `lost connection with ${this.remote} ${PHASE_TEXT[this.phase]}`,
        this.phase,
      ),
    );

  private constructor(
    private readonly opts: ClientOptions,
    private socket: ClientStream,
    timeouts: ClientTimeouts,
  ) {
    this.t = timeouts;
    this.remote = `${opts.host}[${socket.remoteAddress ?? opts.ip ?? opts.host}]:${opts.port}`;
    this.attach(socket);
  }

  /**
   * On a connected `stream`: reads the greeting, says EHLO (HELO when EHLO gets a 5xx; LHLO for
   * LMTP), starts TLS when offered and wanted (then EHLO again), and authenticates when
   * configured. The stream is the connection's from here on (destroyed when it fails or ends).
   */
  static async open(stream: ClientStream, opts: ClientOptions): Promise<SmtpClientConnection> {
    const t = resolveTimeouts(opts.timeouts);
    if (opts.auth && opts.tls === "none") {
      stream.destroy();
      throw new SmtpClientError("auth", "credentials are only sent over TLS, and tls is 'none'", "auth");
    }
    const conn = new SmtpClientConnection(opts, stream, t);
    try {
      await conn.open();
    } catch (err) {
      conn.close();
      throw err;
    }
    conn.phase = "idle";
    return conn;
  }

  /** Upper-case keyword -> parameters, from the last EHLO/LHLO (empty after HELO). */
  get extensions(): Map<string, string> {
    return this.ext;
  }

  get tls(): TlsSessionInfo | undefined {
    return this.tlsInfo;
  }

  /** False once the connection is lost, timed out, closed or quit: connect anew. */
  get usable(): boolean {
    return this.failure === undefined;
  }

  /**
   * One mail transaction. Resolves with a reply per recipient (refusals included); rejects with
   * SmtpClientError when the conversation broke off (timeout, lost connection, unreadable
   * reply): then nothing is known, and every recipient should be tried again.
   */
  async send(env: OutboundEnvelope): Promise<TransactionResult> {
    return this.exclusive(() => this.transaction(env));
  }

  /**
   * Asks whether the server takes mail for `address` (a recipient callout): MAIL FROM:<>, RCPT,
   * RSET; no message is sent. Resolves with the reply that decided: RCPT's, or MAIL's when the
   * null sender was refused (then nothing is known about the recipient).
   */
  async probe(address: string): Promise<{ step: "mail" | "rcpt"; reply: Reply }> {
    return this.exclusive(async () => {
      const smtputf8 = needsSmtputf8("", [address], new Uint8Array(0));
      if (smtputf8 && !this.ext.has("SMTPUTF8")) {
        return { step: "mail", reply: syntheticReply(553, "5.6.7", "SMTPUTF8 not offered by the server") };
      }
      if (this.needRset) await this.rset();
      this.needRset = true;
      this.closingReply = undefined;
      const mail = await this.step(
        mailCommand("", { smtputf8, size: undefined, eightBitMime: false, dsn: undefined }),
        this.t.command,
        "mail",
      );
      if (!isOk(mail)) return { step: "mail", reply: plainReply(mail) };
      const rcpt = await this.step(rcptCommand(address, undefined), this.t.command, "rcpt");
      if (!this.closingReply) await this.rset();
      return { step: "rcpt", reply: plainReply(rcpt) };
    });
  }

  /** One conversation at a time, on a connection that is idle and sound. */
  private async exclusive<T>(run: () => Promise<T>): Promise<T> {
    if (this.busy) throw new Error("SmtpClientConnection: a transaction is already running");
    if (this.failure) throw this.failure;
    if (this.replies.length > 0) {
      this.fail(this.protocolError("idle", `unexpected reply from ${this.remote} while idle`));
      throw this.failure;
    }
    this.busy = true;
    try {
      return await run();
    } finally {
      this.busy = false;
      if (!this.failure) this.phase = "idle";
    }
  }

  /** QUIT, wait (briefly) for the 221, close. Never throws. */
  async quit(): Promise<void> {
    if (!this.failure) {
      try {
        this.write("QUIT\r\n");
        await this.read(Math.min(this.t.command, QUIT_TIMEOUT_MS), "quit");
      } catch {
        // closing anyway
      }
    }
    this.fail(new SmtpClientError("closed", `connection with ${this.remote} closed after QUIT`, "quit"));
  }

  /** Drops the connection at once. */
  close(): void {
    this.fail(new SmtpClientError("closed", `connection with ${this.remote} closed by us`, this.phase));
  }

  // --- session set-up ---

  private async open(): Promise<void> {
    const greeting = await this.read(this.t.greeting, "greeting");
    if (greeting.code !== 220) {
      const kind = greeting.code >= 400 ? "greeting" : "protocol";
      throw new SmtpClientError(
        kind,
        `${this.remote} refused the connection: ${formatClientReply(greeting)}`,
        "greeting",
        plainReply(greeting),
      );
    }
    await this.hello();
    if (this.opts.tls === "required" && !this.ext.has("STARTTLS"))
      throw new SmtpClientError("tls", `${this.remote} offers no STARTTLS`, "starttls");
    if (this.opts.tls !== "none" && this.ext.has("STARTTLS")) {
      this.write("STARTTLS\r\n");
      const r = await this.read(this.t.command, "starttls");
      if (r.code === 220) {
        await this.startTls();
        await this.hello();
      } else if (r.code === 421 || this.opts.tls === "required") {
        throw this.unexpected("starttls", r);
      }
      // Another refusal: opportunistic TLS goes on in plain text (RFC 3207 4.1 leaves it to us).
    }
    if (this.opts.auth) await this.authenticate(this.opts.auth);
  }

  private async hello(): Promise<void> {
    const verb = this.opts.lmtp ? "LHLO" : "EHLO";
    this.write(`${verb} ${this.opts.helo}\r\n`);
    const r = await this.read(this.t.command, "ehlo");
    if (r.code === 250) {
      this.ext = parseExtensions(r);
      return;
    }
    if (r.code >= 500 && !this.opts.lmtp) {
      // An old server without ESMTP (RFC 5321 3.2).
      this.write(`HELO ${this.opts.helo}\r\n`);
      const h = await this.read(this.t.command, "ehlo");
      if (h.code === 250) {
        this.ext = new Map();
        return;
      }
      throw this.unexpected("ehlo", h);
    }
    throw this.unexpected("ehlo", r);
  }

  private async startTls(): Promise<void> {
    // Anything the server sent after its 220 came in plain text and is not to be trusted (the
    // STARTTLS response-injection class of bugs): throw it away with the plain-text parser.
    this.parser = new ReplyParser();
    this.replies = [];
    const plain = this.socket;
    this.detach(plain);
    plain.on("error", ignore); // from here on the TLS socket reports
    this.phase = "tls";
    const servername = isIP(this.opts.host) === 0 ? this.opts.host.replace(/\.$/, "") : undefined;
    const upgrade = this.opts.startTls;
    const ms = this.t.command;
    const secure = await withTimeout<TlsClientStream>(
      ms,
      () =>
        new SmtpClientError(
          "timeout",
          `TLS handshake with ${this.remote} did not finish within ${ms} ms`,
          "tls",
        ),
      (resolve, reject) => {
        if (!upgrade) {
          reject(
            new SmtpClientError("tls", `no TLS for ${this.remote}: this connection cannot upgrade`, "tls"),
          );
          return undefined;
        }
        upgrade(plain, servername).then(resolve, (e: Error) =>
          reject(
            new SmtpClientError(
              "tls",
              `TLS handshake with ${this.remote} failed: ${e.message}`,
              "tls",
              undefined,
              {
                cause: e,
              },
            ),
          ),
        );
        return undefined;
      },
    ).catch((err: SmtpClientError) => {
      plain.destroy();
      this.fail(err);
      throw err;
    });
    this.socket = secure;
    this.attach(secure);
    const verifyError = secure.authorizationError;
    this.tlsInfo = {
      protocol: secure.getProtocol() ?? "unknown",
      cipher: secure.getCipher()?.name ?? "unknown",
      verified: secure.authorized === true,
      verifyError:
        secure.authorized === true || !verifyError
          ? undefined
          : typeof verifyError === "string"
            ? verifyError
            : ((verifyError as { code?: string }).code ?? verifyError.message),
    };
  }

  private async authenticate(auth: { username: string; password: string }): Promise<void> {
    if (!this.tlsInfo) {
      throw new SmtpClientError(
        "auth",
        `${this.remote} offers no STARTTLS; credentials are only sent over TLS`,
        "auth",
      );
    }
    const offered = this.ext.get("AUTH");
    if (offered === undefined) return; // as Postfix does: go on without; the server decides
    const mechanisms = offered.toUpperCase().split(/\s+/);
    let r: WireReply;
    if (mechanisms.includes("PLAIN")) {
      const response = encodeBase64(`\0${auth.username}\0${auth.password}`);
      this.write(`AUTH PLAIN ${response}\r\n`);
      r = await this.read(this.t.command, "auth");
      if (r.code === 334) {
        // A server that wants the response on a line of its own after all.
        this.write(`${response}\r\n`);
        r = await this.read(this.t.command, "auth");
      }
    } else if (mechanisms.includes("LOGIN")) {
      this.write("AUTH LOGIN\r\n");
      r = await this.read(this.t.command, "auth");
      if (r.code === 334) {
        this.write(`${encodeBase64(auth.username)}\r\n`);
        r = await this.read(this.t.command, "auth");
      }
      if (r.code === 334) {
        this.write(`${encodeBase64(auth.password)}\r\n`);
        r = await this.read(this.t.command, "auth");
      }
    } else {
      throw new SmtpClientError(
        "auth",
        `${this.remote} offers no AUTH mechanism we speak (PLAIN, LOGIN): ${offered}`,
        "auth",
      );
    }
    if (r.code !== 235) {
      throw new SmtpClientError(
        "auth",
        `${this.remote} refused authentication: ${formatClientReply(r)}`,
        "auth",
        plainReply(r),
      );
    }
  }

  // --- the transaction ---

  private async transaction(env: OutboundEnvelope): Promise<TransactionResult> {
    const results: (Reply | undefined)[] = env.recipients.map(() => undefined);
    const finish = (rest?: Reply): TransactionResult => ({
      recipients: env.recipients.map((r, i) => ({
        address: r.address,
        reply: plainReply(results[i] ?? rest ?? syntheticReply(451, "4.3.0", "No reply (internal error)")),
      })),
    });
    if (env.recipients.length === 0) return { recipients: [] };
    if (!isSendableAddress(env.mailFrom)) {
      return finish(syntheticReply(553, "5.1.7", "Sender address holds control characters"));
    }
    env.recipients.forEach((r, i) => {
      if (!isSendableAddress(r.address)) {
        results[i] = syntheticReply(553, "5.1.3", "Recipient address holds control characters");
      }
    });
    const sendable = env.recipients.flatMap((_, i) => (results[i] ? [] : [i]));
    if (sendable.length === 0) return finish();

    const ext = this.ext;
    const size = normalizedSize(env.data);
    const limit = sizeLimit(ext);
    if (limit !== undefined && size > limit) {
      return finish(
        syntheticReply(552, "5.3.4", `Message size ${size} exceeds the server's limit of ${limit} octets`),
      );
    }
    const utf8 = needsSmtputf8(
      env.mailFrom,
      sendable.map((i) => env.recipients[i]!.address),
      env.data,
    );
    if (utf8 && !ext.has("SMTPUTF8")) {
      return finish(syntheticReply(553, "5.6.7", "SMTPUTF8 not offered by the server"));
    }

    if (this.needRset) await this.rset();
    this.needRset = true;
    this.closingReply = undefined;
    const dsn = ext.has("DSN");
    const mail = mailCommand(env.mailFrom, {
      size: ext.has("SIZE") ? size : undefined,
      eightBitMime: ext.has("8BITMIME") && has8bit(env.data),
      smtputf8: utf8,
      dsn: dsn ? { ret: env.ret, envid: env.envid } : undefined,
    });
    const rcpts = sendable.map((i) => {
      const r = env.recipients[i]!;
      return rcptCommand(r.address, dsn ? { notify: r.notify, orcpt: r.orcpt } : undefined);
    });

    let mailReply: WireReply;
    const rcptReplies: WireReply[] = [];
    let dataReply: WireReply | undefined;
    if (ext.has("PIPELINING")) {
      // RFC 2920: MAIL, every RCPT and DATA in one write; the replies come back in order.
      this.phase = "mail";
      this.write(`${mail}${rcpts.join("")}DATA\r\n`);
      mailReply = await this.txRead(this.t.command, "mail");
      for (let k = 0; k < rcpts.length; k++) rcptReplies.push(await this.txRead(this.t.command, "rcpt"));
      dataReply = await this.txRead(this.t.dataStart, "data");
    } else {
      mailReply = await this.step(mail, this.t.command, "mail");
      if (isOk(mailReply)) {
        for (const line of rcpts) rcptReplies.push(await this.step(line, this.t.command, "rcpt"));
        if (rcptReplies.some(isOk)) dataReply = await this.step("DATA\r\n", this.t.dataStart, "data");
      }
    }

    const accepted: number[] = [];
    if (!isOk(mailReply)) {
      for (const i of sendable) results[i] = mailReply;
    } else {
      sendable.forEach((i, k) => {
        const r = rcptReplies[k]!;
        if (isOk(r)) accepted.push(i);
        else results[i] = r;
      });
    }

    if (dataReply && dataReply.code === 354 && accepted.length > 0) {
      await this.sendData(env.data);
      if (this.opts.lmtp) {
        for (let k = 0; k < accepted.length; k++) {
          try {
            results[accepted[k]!] = await this.txRead(this.t.dataEnd, "dot");
          } catch (err) {
            // Some recipients have their answer (and may have the message): keep what we know.
            if (k === 0 || !(err instanceof SmtpClientError)) throw err;
            const lost = syntheticReply(451, "4.4.2", err.message);
            for (const i of accepted.slice(k)) results[i] = lost;
            break;
          }
        }
      } else {
        const final = await this.txRead(this.t.dataEnd, "dot");
        for (const i of accepted) results[i] = final;
      }
      if (!this.failure) this.needRset = false;
    } else if (dataReply && dataReply.code === 354) {
      // A pipelined DATA the server took although no recipient was accepted: end it empty.
      await this.endEmptyData();
    } else if (dataReply) {
      if (dataReply.code < 400) throw this.unexpected("data", dataReply);
      for (const i of accepted) results[i] = dataReply;
    }

    if (this.closingReply) {
      this.fail(
        new SmtpClientError(
          "closed",
          `${this.remote} is closing the connection: ${formatClientReply(this.closingReply)}`,
          this.phase,
          plainReply(this.closingReply),
        ),
      );
    }
    return finish(this.closingReply);
  }

  private async rset(): Promise<void> {
    this.write("RSET\r\n");
    const r = await this.read(this.t.command, "rset");
    if (r.code !== 250) {
      const err = this.unexpected("rset", r);
      this.fail(err);
      throw err;
    }
    this.needRset = false;
  }

  /** Lock-step: one command, its reply (or the 421 already had, without sending). */
  private async step(line: string, ms: number, phase: ClientPhase): Promise<WireReply> {
    if (this.closingReply) return this.closingReply;
    this.phase = phase;
    this.write(line);
    return this.txRead(ms, phase);
  }

  /** A reply inside a transaction; after a 421 the server is gone, so that 421 answers the rest. */
  private async txRead(ms: number, phase: ClientPhase): Promise<WireReply> {
    if (this.closingReply) return this.closingReply;
    const r = await this.read(ms, phase);
    if (r.code === 421) this.closingReply = r;
    return r;
  }

  private async sendData(data: Uint8Array): Promise<void> {
    this.phase = "message";
    for (const chunk of encodeData(data)) await this.writeData(chunk);
  }

  private async endEmptyData(): Promise<void> {
    this.phase = "message";
    this.write(".\r\n");
    if (this.opts.lmtp) {
      // LMTP answers per accepted recipient, and there were none: we cannot tell what comes.
      this.close();
      return;
    }
    await this.txRead(this.t.dataEnd, "dot");
  }

  // --- socket plumbing ---

  private attach(socket: ClientStream): void {
    socket.on("data", this.onData);
    socket.on("drain", this.onDrain);
    socket.on("error", this.onError);
    socket.on("close", this.onClose);
  }

  private detach(socket: ClientStream): void {
    socket.off("data", this.onData);
    socket.off("drain", this.onDrain);
    socket.off("error", this.onError);
    socket.off("close", this.onClose);
  }

  private received(chunk: Uint8Array): void {
    if (this.failure) return;
    let got: WireReply[];
    try {
      got = this.parser.push(chunk);
    } catch (err) {
      if (!(err instanceof ReplySyntaxError)) throw err;
      this.fail(
        this.protocolError(
          this.phase,
          `bad reply from ${this.remote} ${PHASE_TEXT[this.phase]}: ${err.message}`,
        ),
      );
      return;
    }
    for (const r of got) this.replies.push(r);
    // We never have more commands in flight than a transaction's worth: more replies than that
    // waiting is a server talking unasked (and memory we would keep for it).
    if (this.replies.length > MAX_QUEUED_REPLIES) {
      this.fail(this.protocolError(this.phase, `too many unrequested replies from ${this.remote}`));
      return;
    }
    const w = this.replyWaiter;
    if (w && this.replies.length > 0) {
      this.replyWaiter = undefined;
      w.resolve(this.replies.shift()!);
    }
  }

  private write(data: string | Uint8Array): void {
    if (this.failure) throw this.failure;
    this.socket.write(typeof data === "string" ? Buffer.from(data, "utf8") : data);
  }

  /** Writes one piece of the message; waits (bounded) while the socket holds too much. */
  private async writeData(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.socket.write(chunk)) return;
    await this.wait<void>(this.t.dataBlock, "message", (w) => {
      this.drainWaiter = w;
    });
  }

  private read(ms: number, phase: ClientPhase): Promise<WireReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return this.wait<WireReply>(ms, phase, (w) => {
      this.replyWaiter = w;
    });
  }

  private wait<T>(ms: number, phase: ClientPhase, register: (w: Waiter<T>) => void): Promise<T> {
    this.phase = phase;
    const what = phase === "message" ? "could not send the message" : "no reply";
    const timedOut = () =>
      new SmtpClientError(
        "timeout",
        `${what} ${PHASE_TEXT[phase]} from ${this.remote} within ${ms} ms`,
        phase,
      );
    return withTimeout<T>(ms, timedOut, (resolve, reject) => {
      register({ resolve, reject });
      return undefined;
    }).catch((err: Error) => {
      // a timeout ends the connection: whoever else waits on it hears the same
      if (err instanceof SmtpClientError && err.kind === "timeout" && !this.failure) this.fail(err);
      throw err;
    });
  }

  /** The connection is done for: remember why, tell whoever waits, drop the socket. */
  private fail(err: SmtpClientError): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.destroy();
    const r = this.replyWaiter;
    const d = this.drainWaiter;
    this.replyWaiter = undefined;
    this.drainWaiter = undefined;
    r?.reject(err);
    d?.reject(err);
  }

  private protocolError(phase: ClientPhase, message: string, reply?: Reply): SmtpClientError {
    return new SmtpClientError("protocol", message, phase, reply);
  }

  private unexpected(phase: ClientPhase, r: WireReply): SmtpClientError {
    return this.protocolError(
      phase,
      `unexpected reply from ${this.remote} ${PHASE_TEXT[phase]}: ${formatClientReply(r)}`,
      plainReply(r),
    );
  }
}

const isOk = (r: Reply) => r.code >= 200 && r.code < 300;
const ignore = () => {};

function resolveTimeouts(given: Partial<ClientTimeouts> | undefined): ClientTimeouts {
  const t = { ...CLIENT_TIMEOUTS, ...stripUndefined(given ?? {}) };
  if (given?.dataStart === undefined && given?.command !== undefined) {
    t.dataStart = Math.min(given.command, CLIENT_TIMEOUTS.dataStart);
  }
  return t;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
