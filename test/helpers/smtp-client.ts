// A small raw-socket SMTP client for end-to-end tests: it sends exactly the bytes it is given
// (hostile ones too) and reads whole replies, always with a timeout.
import net from "node:net";
import tls from "node:tls";

export interface SmtpReply {
  code: number;
  /** The text of each line, after "NNN-" / "NNN ". */
  lines: string[];
  /** The reply as it came over the wire, CRLFs included. */
  raw: string;
}

export interface ConnectOptions {
  host?: string;
  /** Implicit TLS (port 465). */
  tls?: boolean;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5000;

export class SmtpClient {
  private buffer: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  private readonly closedPromise: Promise<void>;
  private markClosed!: () => void;
  /** Set when the socket failed (reset, TLS alert...). */
  error: Error | undefined;

  private constructor(private socket: net.Socket) {
    this.closedPromise = new Promise((resolve) => {
      this.markClosed = resolve;
    });
    this.attach(socket);
  }

  static connect(port: number, opts: ConnectOptions = {}): Promise<SmtpClient> {
    const host = opts.host ?? "127.0.0.1";
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return withTimeout(
      new Promise<SmtpClient>((resolve, reject) => {
        const socket = opts.tls
          ? tls.connect({ host, port, rejectUnauthorized: false })
          : net.connect({ host, port });
        const ready = opts.tls ? "secureConnect" : "connect";
        socket.once("error", reject);
        socket.once(ready, () => {
          socket.off("error", reject);
          resolve(new SmtpClient(socket));
        });
      }),
      timeoutMs,
      `connect to ${host}:${port}`,
    );
  }

  private attach(socket: net.Socket): void {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.notify();
    });
    socket.on("error", (err) => {
      this.error = err;
      this.notify();
    });
    socket.on("end", () => {
      this.ended = true;
      this.notify();
    });
    socket.on("close", () => {
      this.ended = true;
      this.markClosed();
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** True once the server closed the connection (or it broke). */
  get isClosed(): boolean {
    return this.ended;
  }

  /** Bytes received and not yet read as a reply. */
  get unread(): string {
    return this.buffer.toString("latin1");
  }

  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  /** Waits for one complete (possibly multi-line) reply. */
  async readReply(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.takeReply();
      if (reply) return reply;
      if (this.ended || this.error) {
        throw new Error(`connection closed before a full reply; got ${JSON.stringify(this.unread)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no full reply within ${timeoutMs} ms; got ${JSON.stringify(this.unread)}`);
      await this.next(left);
    }
  }

  /** Sends one command line (CRLF added) and reads its reply. */
  async command(line: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SmtpReply> {
    await this.write(`${line}\r\n`);
    return this.readReply(timeoutMs);
  }

  /** Reads `n` replies in order (after a pipelined write). */
  async readReplies(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SmtpReply[]> {
    const out: SmtpReply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.readReply(timeoutMs));
    return out;
  }

  /** Resolves true when the server closes within `timeoutMs`, false otherwise. */
  async waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<boolean> {
    if (this.ended) return true;
    return Promise.race([this.closedPromise.then(() => true), Bun.sleep(timeoutMs).then(() => this.ended)]);
  }

  /** Waits until something arrives or `ms` pass; true when new bytes came. */
  async quietFor(ms: number): Promise<boolean> {
    const before = this.buffer.length;
    await Bun.sleep(ms);
    return this.buffer.length > before;
  }

  /**
   * Starts TLS on this connection (after the server's 220 to STARTTLS). Bytes already read in
   * plain text and not yet taken stay in `unread` of the returned value, for checks.
   */
  async upgradeTls(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ leftover: string }> {
    const leftover = this.unread;
    this.buffer = Buffer.alloc(0);
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("end");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    const secure = await withTimeout(
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ socket: plain, rejectUnauthorized: false });
        s.once("error", reject);
        s.once("secureConnect", () => {
          s.off("error", reject);
          resolve(s);
        });
      }),
      timeoutMs,
      "TLS handshake",
    );
    this.socket = secure;
    this.attach(secure);
    return { leftover };
  }

  /** Closes our side at once. */
  destroy(): void {
    this.socket.destroy();
  }

  /** QUIT when still open, then close. */
  async quit(): Promise<void> {
    if (!this.ended) {
      try {
        await this.command("QUIT", 2000);
      } catch {
        // closing anyway
      }
    }
    this.destroy();
  }

  private next(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private takeReply(): SmtpReply | undefined {
    const lines: string[] = [];
    let offset = 0;
    let code = 0;
    for (;;) {
      const lf = this.buffer.indexOf(10, offset);
      if (lf < 0) return undefined;
      const line = this.buffer.toString("latin1", offset, lf).replace(/\r$/, "");
      offset = lf + 1;
      const m = /^(\d{3})(?:([ -])(.*))?$/.exec(line);
      if (!m) throw new Error(`not an SMTP reply line: ${JSON.stringify(line)}`);
      code = Number(m[1]);
      lines.push(m[3] ?? "");
      if (m[2] !== "-") break;
    }
    const raw = this.buffer.toString("latin1", 0, offset);
    this.buffer = this.buffer.subarray(offset);
    return { code, lines, raw };
  }
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** "250 2.1.0 Ok" style: the code and the first line, for compact assertions. */
export function summary(r: SmtpReply): string {
  return `${r.code} ${r.lines.at(-1) ?? ""}`.trimEnd();
}

/** Connects, reads the 220 greeting and sends EHLO; returns the client and the EHLO reply. */
export async function ehloClient(
  port: number,
  opts: ConnectOptions & { helo?: string } = {},
): Promise<{ client: SmtpClient; ehlo: SmtpReply }> {
  const client = await SmtpClient.connect(port, opts);
  const greeting = await client.readReply(opts.timeoutMs);
  if (greeting.code !== 220) throw new Error(`greeting: ${greeting.raw}`);
  const ehlo = await client.command(`EHLO ${opts.helo ?? "client.test"}`, opts.timeoutMs);
  if (ehlo.code !== 250) throw new Error(`EHLO: ${ehlo.raw}`);
  return { client, ehlo };
}

/**
 * One whole transaction: MAIL, RCPT(s), DATA, the content (dot-stuffed here; the end-of-data
 * line added, after a CRLF of its own when the content does not end with one).
 * Returns the final reply; throws when an envelope step is refused.
 */
export async function sendMessage(
  client: SmtpClient,
  from: string,
  to: string[],
  content: string | Uint8Array,
): Promise<SmtpReply> {
  const mail = await client.command(`MAIL FROM:<${from}>`);
  if (mail.code !== 250) throw new Error(`MAIL: ${mail.raw}`);
  for (const rcpt of to) {
    const r = await client.command(`RCPT TO:<${rcpt}>`);
    if (r.code !== 250) throw new Error(`RCPT: ${r.raw}`);
  }
  const data = await client.command("DATA");
  if (data.code !== 354) throw new Error(`DATA: ${data.raw}`);
  const bytes = typeof content === "string" ? Buffer.from(content, "utf8") : Buffer.from(content);
  const endsWithCrlf = bytes.length >= 2 && bytes[bytes.length - 2] === 13 && bytes[bytes.length - 1] === 10;
  await client.write(Buffer.concat([dotStuff(bytes), Buffer.from(endsWithCrlf ? ".\r\n" : "\r\n.\r\n")]));
  return client.readReply(10000);
}

/**
 * A session of its own for one message: connect, EHLO, sendMessage, QUIT. Returns the final
 * reply; throws as ehloClient and sendMessage do.
 */
export async function sendOnNewSession(
  port: number,
  from: string,
  to: string[],
  content: string | Uint8Array,
): Promise<SmtpReply> {
  const { client } = await ehloClient(port);
  try {
    return await sendMessage(client, from, to, content);
  } finally {
    await client.quit();
  }
}

/** Doubles a dot at the start of every CRLF line (RFC 5321 4.5.2). */
export function dotStuff(bytes: Uint8Array): Buffer {
  const out: number[] = [];
  let lineStart = true;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (lineStart && b === 46) out.push(46);
    out.push(b);
    lineStart = b === 10 && i > 0 && bytes[i - 1] === 13;
  }
  return Buffer.from(out);
}

/** The id in "250 2.0.0 Ok: queued as ID". */
export function queuedId(r: SmtpReply): string {
  const m = /queued as (\S+)/.exec(r.lines.at(-1) ?? "");
  if (r.code !== 250 || !m) throw new Error(`not a queued reply: ${r.raw}`);
  return m[1]!;
}
