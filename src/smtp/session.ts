// The SMTP server session: bytes in, replies out. It owns no socket and no database: the
// listener feeds it bytes and carries out its output, and a backend answers the questions that
// need the directory or the queue. So every rule here is tested without a network.
import { decodeBase64, decodePlain, encodeBase64 } from "../auth/sasl.ts";
import type { Target } from "../domains/targets.ts";
import { errorMessage } from "../log.ts";
import { receivedHeader } from "../mail/received.ts";
import { controlCharacter, type MailParams, parseCommand, type RcptParams } from "./command.ts";
import { concat, type DecodedMessage, MessageDecoder } from "./data.ts";
import { formatPlain, formatReply, R, type Reply } from "./reply.ts";

export type PortKind = "smtp" | "submission" | "submissions";

/** Longest command line, CRLF included (RFC 5321 4.5.3.1.4). */
export const MAX_COMMAND_OCTETS = 512;
const MAX_AUTH_LINE_OCTETS = 12288;
/** Pipelined commands waiting behind a slow one; more is a client flooding us. */
const MAX_PENDING_INPUT = 256 * 1024;

export interface SessionPolicy {
  port: PortKind;
  hostname: string;
  maxMessageBytes: number;
  maxRecipients: number;
  /** A certificate is there, so STARTTLS can be offered. */
  tlsAvailable: boolean;
  maxErrors: number;
  maxAuthFailures: number;
  /** Delay before answering the n-th failed AUTH (n from 1). */
  authFailureDelayMs(failures: number): number;
}

export interface TlsInfo {
  protocol: string;
  cipher: string;
}

export interface Recipient {
  address: string;
  params: RcptParams;
  target: Target;
}

export interface Envelope {
  mailFrom: string;
  mailParams: MailParams;
  recipients: Recipient[];
  helo: string;
  remoteIp: string;
  authUser: string | undefined;
  port: PortKind;
  tls: TlsInfo | undefined;
}

export type RecipientDecision = { ok: true; target: Target } | { ok: false; reply: Reply };

/** What an AUTH came to: the canonical login, wrong credentials, or a client locked out. */
export type AuthOutcome = { kind: "ok"; login: string } | { kind: "wrong" } | { kind: "locked-out" };

export interface SessionBackend {
  authenticate(username: string, password: string, clientIp: string): Promise<AuthOutcome>;
  /** A reply refusing MAIL FROM, or undefined to accept it. */
  checkSender(
    address: string,
    ctx: { authUser: string | undefined; port: PortKind; clientIp: string },
  ): Promise<Reply | undefined>;
  checkRecipient(
    address: string,
    ctx: { authUser: string | undefined; port: PortKind; mailFrom: string },
  ): Promise<RecipientDecision>;
  /** Commits the message; resolves only once it is durable. */
  accept(id: string, envelope: Envelope, content: Uint8Array): Promise<void>;
}

/** Thrown by `SessionBackend.accept` to refuse a message with a reply of its own. */
export class MessageRefused extends Error {
  constructor(readonly reply: Reply) {
    super(reply.lines.join(" "));
  }
}

export type BackendStep = keyof SessionBackend;

/**
 * A backend question that could not be answered (the database or DNS away). The session answers
 * it with a 4xx and goes on: the client tries again later, and nothing is bounced for it.
 */
export class BackendFailure extends Error {
  constructor(
    readonly step: BackendStep,
    override readonly cause: unknown,
  ) {
    super(`${step} failed: ${errorMessage(cause)}`);
  }
}

/** The same backend, with every failure but a refusal turned into a `BackendFailure` naming its step. */
function guarded(backend: SessionBackend): SessionBackend {
  const wrap =
    <A extends unknown[], T>(step: BackendStep, call: (...args: A) => Promise<T>) =>
    async (...args: A): Promise<T> => {
      try {
        return await call(...args);
      } catch (err) {
        throw err instanceof MessageRefused ? err : new BackendFailure(step, err);
      }
    };
  return {
    authenticate: wrap("authenticate", (u, p, ip) => backend.authenticate(u, p, ip)),
    checkSender: wrap("checkSender", (a, c) => backend.checkSender(a, c)),
    checkRecipient: wrap("checkRecipient", (a, c) => backend.checkRecipient(a, c)),
    accept: wrap("accept", (i, e, c) => backend.accept(i, e, c)),
  };
}

/** The transient reply for a step the backend could not answer. */
function unavailable(step: BackendStep): Reply {
  switch (step) {
    case "authenticate":
      return R.authUnavailable();
    case "accept":
      return R.localError();
    default:
      return R.tryAgainLater();
  }
}

/** Why the session itself ended a connection (the listener knows of the other endings). */
export type SessionEnding = "quit" | "timeout" | "error_limit" | "shutdown";

/** What a session tells about itself, for metrics: said when it happens, never read off the wire. */
export type SessionEvent = { kind: "auth-failed" } | { kind: "ending"; why: SessionEnding };

export interface SessionOutput {
  send(text: string): void;
  event(e: SessionEvent): void;
  /** Begin the TLS handshake; the listener calls `tlsStarted` when it completes. */
  startTls(): void;
  close(): void;
  /** A step failed for a reason of ours (logged); the client was given a 4xx for it. */
  fault(err: unknown): void;
}

export interface SessionClock {
  now(): number;
  sleep(ms: number): Promise<void>;
  newId(): string;
}

/** RFC 5321 4.5.3.2 timeouts, seconds. */
export const TIMEOUTS = { command: 300, dataBlock: 180, dataTotal: 600 } as const;

type Mode =
  | { kind: "command" }
  | { kind: "skipLongLine" }
  | { kind: "data"; decoder: MessageDecoder; startedAt: number }
  | { kind: "bdat"; remaining: number; last: boolean; refusal: Reply | undefined }
  | { kind: "auth"; mechanism: "PLAIN" | "LOGIN"; username: string | undefined }
  | { kind: "tlsPending" }
  | { kind: "closed" };

interface Transaction {
  mailFrom: string;
  params: MailParams;
  recipients: Recipient[];
  /** BDAT chunks so far; the decoder lives across chunks, the clock from the first chunk on. */
  bdat: { decoder: MessageDecoder; startedAt: number } | undefined;
}

const LF = 10;
const textDecoder = new TextDecoder("utf-8");
const NON_ASCII = /[^\p{ASCII}]/u;

export class SmtpSession {
  private input: Uint8Array = new Uint8Array(0);
  private mode: Mode = { kind: "command" };
  private running = false;
  private helo: string | undefined;
  private esmtp = false;
  private tls: TlsInfo | undefined;
  private authUser: string | undefined;
  private tx: Transaction | undefined;
  private errors = 0;
  private authFailures = 0;
  /** Set when the session must end: it does once the command in progress is answered. */
  private closing: { reply: Reply; why: SessionEnding | undefined } | undefined;
  private readonly backend: SessionBackend;

  constructor(
    private readonly policy: SessionPolicy,
    backend: SessionBackend,
    private readonly out: SessionOutput,
    private readonly clock: SessionClock,
    private readonly remoteIp: string,
    implicitTls?: TlsInfo,
  ) {
    this.backend = guarded(backend);
    this.tls = implicitTls;
  }

  get closed(): boolean {
    return this.mode.kind === "closed";
  }

  /** A command is being answered (a commit may be in progress). */
  get busy(): boolean {
    return this.running;
  }

  /** How long the listener waits for the next bytes before calling `timedOut`. */
  get timeoutSeconds(): number {
    return this.mode.kind === "data" || this.mode.kind === "bdat" ? TIMEOUTS.dataBlock : TIMEOUTS.command;
  }

  greet(): void {
    this.out.send(formatPlain(220, [`${this.policy.hostname} ESMTP Postern`]));
  }

  timedOut(): void {
    this.closeSoon(R.timeout(), "timeout");
  }

  /** The server is stopping: end the session politely. */
  shutdown(): void {
    this.closeSoon(R.shuttingDown(), "shutdown");
  }

  /**
   * Ends the session with `r`, but never between a commit and its 250: a command in progress is
   * answered first, or a client told 421 would send again a message we already hold.
   */
  private closeSoon(r: Reply, why?: SessionEnding): void {
    if (!this.running) return this.closeWith(r, why);
    this.closing ??= { reply: r, why };
    this.input = new Uint8Array(0);
  }

  tlsStarted(info: TlsInfo): void {
    // RFC 3207 4.2: forget everything learnt before TLS; the client must EHLO again.
    this.tls = info;
    this.helo = undefined;
    this.esmtp = false;
    this.tx = undefined;
    this.input = new Uint8Array(0);
    this.mode = { kind: "command" };
  }

  /** Takes `chunk` over: the caller must not write to it afterwards. */
  receive(chunk: Uint8Array): void {
    // Nothing may ride in before TLS, and nothing more is read from a session that is ending.
    if (this.mode.kind === "closed" || this.mode.kind === "tlsPending" || this.closing) return;
    // Kept as it is (no copy of every message's bytes): the caller hands `chunk` over for good.
    // Bun gives each socket read a buffer of its own (smtp-listener.test.ts, "bytes kept").
    this.input = this.input.length === 0 ? chunk : concat([this.input, chunk]);
    if (this.mode.kind === "command" && this.input.length > MAX_PENDING_INPUT && this.running) {
      this.closeSoon(R.tooManyErrors(), "error_limit");
      return;
    }
    this.pump().catch((err) => this.out.fault(err));
  }

  private send(r: Reply): void {
    this.out.send(formatReply(r));
  }

  /** `why` is left out where the close is our fault or a broken command (counted as "closed"). */
  private closeWith(r: Reply, why?: SessionEnding): void {
    if (this.mode.kind === "closed") return;
    if (why) this.out.event({ kind: "ending", why });
    this.send(r);
    this.mode = { kind: "closed" };
    this.input = new Uint8Array(0);
    this.out.close();
  }

  /** Sends a reply to a command, counting failures towards the error limit. */
  private answer(r: Reply): void {
    if (r.code >= 400 && ++this.errors >= this.policy.maxErrors) {
      this.send(r);
      this.closeWith(R.tooManyErrors(), "error_limit");
      return;
    }
    this.send(r);
  }

  // One runner at a time keeps replies in the order of the commands (RFC 2920).
  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.input.length > 0 && !this.closing) {
        const mode = this.mode;
        if (mode.kind === "closed" || mode.kind === "tlsPending") break;
        if (mode.kind === "data") {
          if (this.clock.now() - mode.startedAt > TIMEOUTS.dataTotal * 1000) {
            this.closeWith(R.timeout(), "timeout");
            break;
          }
          const end = mode.decoder.push(this.input);
          if (end < 0) {
            this.input = new Uint8Array(0);
            break;
          }
          this.input = this.input.subarray(end);
          this.mode = { kind: "command" };
          await this.step(() => this.finishMessage(mode.decoder.result(), false));
          continue;
        }
        if (mode.kind === "bdat") {
          // The same overall limit as DATA: a message trickled in tiny chunks must end too.
          if (this.tx?.bdat && this.clock.now() - this.tx.bdat.startedAt > TIMEOUTS.dataTotal * 1000) {
            this.closeWith(R.timeout(), "timeout");
            break;
          }
          const n = Math.min(mode.remaining, this.input.length);
          if (!mode.refusal) this.tx!.bdat!.decoder.push(this.input.subarray(0, n));
          this.input = this.input.subarray(n);
          mode.remaining -= n;
          if (mode.remaining > 0) break;
          this.mode = { kind: "command" };
          await this.step(() => this.finishChunk(mode));
          continue;
        }
        const lf = this.input.indexOf(LF);
        if (mode.kind === "skipLongLine") {
          if (lf < 0) {
            this.input = new Uint8Array(0);
            break;
          }
          this.input = this.input.subarray(lf + 1);
          this.mode = { kind: "command" };
          continue;
        }
        // RFC 4954 4: an AUTH response line may be up to 12288 octets, a command 512.
        const maxLine = mode.kind === "auth" ? MAX_AUTH_LINE_OCTETS : MAX_COMMAND_OCTETS;
        if (lf < 0) {
          if (this.input.length >= maxLine) {
            this.input = new Uint8Array(0);
            this.mode = { kind: "skipLongLine" }; // also ends an AUTH exchange
            this.answer(R.lineTooLong());
          }
          break;
        }
        const raw = this.input.subarray(0, lf);
        this.input = this.input.subarray(lf + 1);
        if (lf + 1 > maxLine) {
          this.mode = { kind: "command" };
          this.answer(R.lineTooLong());
          continue;
        }
        const line = textDecoder.decode(raw.at(-1) === 13 ? raw.subarray(0, -1) : raw);
        const control = controlCharacter(line);
        if (control) {
          // Never leave an AUTH exchange waiting: the next line would be read as credentials.
          this.mode = { kind: "command" };
          this.answer(R.badSyntax(`Error: control character ${control} in command`));
          continue;
        }
        await this.step(() => (mode.kind === "auth" ? this.authStep(mode, line) : this.command(line)));
      }
    } finally {
      this.running = false;
      // an empty view of the last read would keep that whole buffer alive while the client idles
      if (this.input.length === 0) this.input = new Uint8Array(0);
      if (this.closing) this.closeWith(this.closing.reply, this.closing.why);
    }
  }

  /**
   * Runs one step so that it ends in a reply whatever happens: a refusal is answered with its own
   * reply; a backend failure with a 4xx, and the session goes on (not counted as the client's
   * error); anything else is a fault of ours that leaves the state unknown: 421 and close.
   */
  private async step(run: () => Promise<void> | void): Promise<void> {
    try {
      await run();
    } catch (err) {
      if (!(err instanceof MessageRefused)) this.out.fault(err);
      if (this.closed) return;
      if (err instanceof MessageRefused) this.answer(err.reply);
      else if (err instanceof BackendFailure) this.send(unavailable(err.step));
      else this.closeSoon(R.internalError());
    }
  }

  private async command(line: string): Promise<void> {
    const parsed = parseCommand(line);
    if (!parsed.ok) {
      // A BDAT we cannot parse has an unknown size: its data can't be skipped, so it can't be trusted.
      if (/^bdat\b/i.test(line)) return this.closeWith(parsed.reply);
      return this.answer(parsed.reply);
    }
    const c = parsed.command;
    switch (c.verb) {
      case "EHLO":
      case "HELO":
        return this.hello(c.verb, c.domain);
      case "NOOP":
        return this.send(R.ok());
      case "HELP":
        return this.send(R.help());
      case "VRFY":
        return this.send(R.vrfy());
      case "RSET":
        this.tx = undefined;
        return this.send(R.ok());
      case "QUIT":
        return this.closeWith(R.bye(), "quit");
      case "STARTTLS":
        return this.startTls();
      case "AUTH":
        return this.auth(c.mechanism, c.initialResponse);
      case "MAIL":
        return this.mail(c.address, c.params);
      case "RCPT":
        return this.rcpt(c.address, c.params);
      case "DATA":
        return this.data();
      case "BDAT":
        return this.bdat(c.size, c.last);
    }
  }

  private extensions(): string[] {
    const ext = [
      this.policy.hostname,
      "PIPELINING",
      `SIZE ${this.policy.maxMessageBytes}`,
      "8BITMIME",
      "SMTPUTF8",
      "ENHANCEDSTATUSCODES",
      "CHUNKING",
      "DSN",
    ];
    if (!this.tls && this.policy.tlsAvailable) ext.push("STARTTLS");
    // AUTH is for the submission ports only, and only under TLS (the contract).
    if (this.tls && !this.authUser && this.policy.port !== "smtp") ext.push("AUTH PLAIN LOGIN");
    return ext;
  }

  private hello(verb: "EHLO" | "HELO", domain: string): void {
    this.helo = domain;
    this.esmtp = verb === "EHLO";
    this.tx = undefined;
    if (verb === "HELO") return this.send(R.ok(this.policy.hostname));
    this.out.send(formatPlain(250, this.extensions()));
  }

  private startTls(): void {
    if (this.tls) return this.answer(R.badSequence("Error: TLS already active"));
    if (!this.policy.tlsAvailable)
      return this.answer({ code: 454, status: "4.7.0", lines: ["TLS not available"] });
    this.send(R.readyTls());
    // RFC 3207 4.2: anything the client pipelined behind STARTTLS is thrown away.
    this.input = new Uint8Array(0);
    this.mode = { kind: "tlsPending" };
    this.out.startTls();
  }

  private needsAuth(): boolean {
    return this.policy.port !== "smtp" && !this.authUser;
  }

  private auth(mechanism: string, initial: string | undefined): Promise<void> | void {
    if (!this.helo) return this.answer(R.badSequence("Error: send EHLO first"));
    if (this.policy.port === "smtp") return this.answer(R.badSequence("Error: authentication not enabled"));
    if (!this.tls) return this.answer(R.tlsRequired());
    if (this.authUser) return this.answer(R.alreadyAuthenticated());
    if (this.tx) return this.answer(R.badSequence("Error: MAIL transaction in progress"));
    if (mechanism === "PLAIN") {
      if (initial === undefined) {
        this.mode = { kind: "auth", mechanism, username: undefined };
        return this.out.send("334 \r\n");
      }
      return this.plain(initial);
    }
    if (mechanism === "LOGIN") {
      if (initial === undefined) {
        this.mode = { kind: "auth", mechanism, username: undefined };
        return this.out.send(`334 ${encodeBase64("Username:")}\r\n`);
      }
      const username = decodeBase64(initial);
      if (username === undefined) return this.answer(R.badSyntax("Error: invalid base64 data"));
      this.mode = { kind: "auth", mechanism, username };
      return this.out.send(`334 ${encodeBase64("Password:")}\r\n`);
    }
    return this.answer(R.authMechanism());
  }

  private async authStep(mode: Extract<Mode, { kind: "auth" }>, line: string): Promise<void> {
    this.mode = { kind: "command" };
    if (line === "*") return this.answer(R.authCancelled());
    if (mode.mechanism === "PLAIN") return this.plain(line);
    const text = decodeBase64(line);
    if (text === undefined) return this.answer(R.badSyntax("Error: invalid base64 data"));
    if (mode.username === undefined) {
      this.mode = { kind: "auth", mechanism: "LOGIN", username: text };
      return this.out.send(`334 ${encodeBase64("Password:")}\r\n`);
    }
    return this.verify(mode.username, text);
  }

  private plain(response: string): Promise<void> | void {
    const creds = decodePlain(response === "=" ? "" : response);
    if (creds === "malformed") return this.answer(R.badSyntax("Error: invalid PLAIN response"));
    if (creds === "authzid") return this.failAuth();
    return this.verify(creds.username, creds.password);
  }

  private async verify(username: string, password: string): Promise<void> {
    const outcome = await this.backend.authenticate(username, password, this.remoteIp);
    if (this.closed) return;
    // Locked out, the password was not even looked at: no failure of this session's to count.
    if (outcome.kind === "locked-out") return this.answer(R.authLockedOut());
    if (outcome.kind === "wrong") return this.failAuth();
    this.authUser = outcome.login;
    this.send(R.authOk());
  }

  private async failAuth(): Promise<void> {
    this.authFailures++;
    // The delay slows password guessing on this connection only; others go on meanwhile.
    await this.clock.sleep(this.policy.authFailureDelayMs(this.authFailures));
    if (this.closed) return;
    this.out.event({ kind: "auth-failed" });
    if (this.authFailures >= this.policy.maxAuthFailures) {
      this.send(R.authFailed());
      return this.closeWith(R.tooManyAuthFailures(), "error_limit");
    }
    this.answer(R.authFailed());
  }

  private async mail(address: string, params: MailParams): Promise<void> {
    if (!this.helo) return this.answer(R.badSequence("Error: send HELO/EHLO first"));
    if (this.tx) return this.answer(R.badSequence("Error: nested MAIL command"));
    if (this.needsAuth()) return this.answer(R.authRequired());
    if (params.size !== undefined && params.size > this.policy.maxMessageBytes)
      return this.answer(R.tooBig());
    if (!params.smtputf8 && NON_ASCII.test(address)) return this.answer(R.utf8Needed());
    const refusal = await this.backend.checkSender(address, {
      authUser: this.authUser,
      port: this.policy.port,
      clientIp: this.remoteIp,
    });
    if (this.closed) return;
    if (refusal) return this.answer(refusal);
    this.tx = { mailFrom: address, params, recipients: [], bdat: undefined };
    this.send(R.senderOk());
  }

  private async rcpt(address: string, params: RcptParams): Promise<void> {
    const tx = this.tx;
    if (!tx) return this.answer(R.badSequence("Error: need MAIL command"));
    if (tx.recipients.length >= this.policy.maxRecipients) return this.answer(R.tooManyRecipients());
    if (!tx.params.smtputf8 && NON_ASCII.test(address)) return this.answer(R.utf8Needed());
    const decision = await this.backend.checkRecipient(address, {
      authUser: this.authUser,
      port: this.policy.port,
      mailFrom: tx.mailFrom,
    });
    if (this.closed) return;
    if (!decision.ok) return this.answer(decision.reply);
    tx.recipients.push({ address, params, target: decision.target });
    this.send(R.recipientOk());
  }

  private data(): void {
    if (!this.tx) return this.answer(R.badSequence("Error: need MAIL command"));
    if (this.tx.bdat) return this.answer(R.badSequence("Error: DATA after BDAT"));
    if (this.tx.recipients.length === 0) return this.answer(R.badSequence("Error: no valid recipients"));
    this.mode = {
      kind: "data",
      decoder: new MessageDecoder(this.policy.maxMessageBytes, true),
      startedAt: this.clock.now(),
    };
    this.send(R.startData());
  }

  private async bdat(size: number, last: boolean): Promise<void> {
    // The chunk's octets follow whatever we answer: they are read (or skipped) before the reply.
    let refusal: Reply | undefined;
    if (!this.tx) refusal = R.badSequence("Error: need MAIL command");
    else if (this.tx.recipients.length === 0) refusal = R.badSequence("Error: no valid recipients");
    if (this.tx && !refusal) {
      this.tx.bdat ??= {
        decoder: new MessageDecoder(this.policy.maxMessageBytes, false),
        startedAt: this.clock.now(),
      };
    }
    this.mode = { kind: "bdat", remaining: size, last, refusal };
    if (size === 0) {
      this.mode = { kind: "command" };
      await this.finishChunk({ kind: "bdat", remaining: 0, last, refusal });
    }
  }

  private async finishChunk(chunk: Extract<Mode, { kind: "bdat" }>): Promise<void> {
    if (chunk.refusal) {
      this.tx = undefined;
      return this.answer(chunk.refusal);
    }
    const { decoder } = this.tx!.bdat!;
    if (!chunk.last) return this.send(R.ok(`${decoder.result().size} octets received`));
    await this.finishMessage(decoder.result(), true);
  }

  private async finishMessage(m: DecodedMessage, chunked: boolean): Promise<void> {
    const tx = this.tx!;
    this.tx = undefined;
    if (m.tooBig) return this.answer(R.tooBig());
    if (m.bareLf || m.bareCr) return this.answer(R.bareLineEnd(m.bareLf ? "LF" : "CR"));
    if (m.longLine) return this.answer(R.textLineTooLong());
    const id = this.clock.newId();
    const envelope: Envelope = {
      mailFrom: tx.mailFrom,
      mailParams: tx.params,
      recipients: tx.recipients,
      helo: this.helo!,
      remoteIp: this.remoteIp,
      authUser: this.authUser,
      port: this.policy.port,
      tls: this.tls,
    };
    const header = receivedHeader({
      helo: this.helo!,
      remoteIp: this.remoteIp,
      hostname: this.policy.hostname,
      id,
      esmtp: this.esmtp || chunked,
      tls: this.tls,
      authUser: this.authUser,
      recipients: tx.recipients.map((r) => r.address),
      date: new Date(this.clock.now()),
    });
    const content = concat([new TextEncoder().encode(header), ...m.chunks]);
    await this.backend.accept(id, envelope, content);
    if (!this.closed) this.send(R.queued(id));
  }
}
