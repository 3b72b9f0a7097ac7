// POSTs small JSON bodies over HTTP/1.1 and keeps the connections for the next ones: the event
// webhooks' client. Bun's fetch spends ~0.05 ms of CPU a POST to a local receiver where a
// keep-alive connection on Bun's own sockets spends ~0.015 (bench/RESULTS.md, issue 12), and a
// hook subscribed to every event makes several POSTs per message.
//
// Only what a webhook needs: a status, and Location when it is a redirect (never followed).
// A body framed by Content-Length is counted off and the connection reused; any other framing
// (chunked, to the end of the connection) is not read: the status is known, and the connection is
// closed instead. A kept connection the server closed just as it was reused is retried once on a
// new one (the receiver may then see the POST twice: webhooks are at least once, same id).
import tls from "node:tls";
import type { Socket, SocketHandler } from "bun";
import { bodyFraming, parseResponseHead, type ResponseHead } from "./http-response.ts";
import { SocketWriter } from "./writer.ts";

export interface PostReply {
  status: number;
  reason: string;
  /** A redirect's target, to report: it is never followed. */
  location: string | undefined;
}

export class HttpPostError extends Error {
  constructor(
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

/** The server closed a kept connection before a byte of the reply: safe to try a new one. */
class ClosedUnanswered extends HttpPostError {}

export interface HttpPosterOptions {
  /** Roots trusted besides the system's (POSTERN_EXTRA_CA_FILE). */
  extraRoots?: readonly string[];
  /** Idle connections kept per origin. */
  maxIdlePerOrigin?: number;
}

/** Idle longer than this, a connection is closed by us: under the 5 s of Node's and many servers. */
const IDLE_MS = 4_000;

export class HttpPoster {
  private readonly idle = new Map<string, HttpConnection[]>();
  private readonly ca: string[] | undefined;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(private readonly o: HttpPosterOptions = {}) {
    this.ca = o.extraRoots?.length ? [...tls.rootCertificates, ...o.extraRoots] : undefined;
  }

  /** The reply to a POST of `body` to `url`; throws HttpPostError when there is none in `timeoutMs`. */
  async post(url: URL, fields: Record<string, string>, body: string, timeoutMs: number): Promise<PostReply> {
    const request = encodeRequest(url, fields, body);
    const origin = url.origin;
    const deadline = Date.now() + timeoutMs;
    const kept = this.takeIdle(origin);
    if (kept) {
      try {
        return await this.exchange(kept, origin, request, deadline);
      } catch (err) {
        if (!(err instanceof ClosedUnanswered)) throw err;
      }
    }
    const fresh = await HttpConnection.open(url, this.ca, deadline);
    return this.exchange(fresh, origin, request, deadline);
  }

  /** Closes the idle connections; a POST in flight ends on its own. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const list of this.idle.values()) for (const c of list) c.close();
    this.idle.clear();
  }

  private async exchange(conn: HttpConnection, origin: string, request: Buffer, deadline: number) {
    const { reply, reusable } = await conn.request(request, deadline);
    // after close(), a POST that was in flight gives its connection up rather than keep it
    if (reusable && !this.closed) this.keep(origin, conn);
    else conn.close();
    return reply;
  }

  private takeIdle(origin: string): HttpConnection | undefined {
    const list = this.idle.get(origin);
    while (list?.length) {
      const conn = list.pop()!;
      if (!conn.closed && Date.now() - conn.idleSince < IDLE_MS) return conn;
      conn.close();
    }
    return undefined;
  }

  private keep(origin: string, conn: HttpConnection): void {
    const list = this.idle.get(origin) ?? [];
    this.idle.set(origin, list);
    if (list.length >= (this.o.maxIdlePerOrigin ?? 128)) {
      conn.close();
      return;
    }
    conn.idle();
    list.push(conn);
    this.sweeper ??= setInterval(() => this.sweep(), IDLE_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    for (const [origin, list] of this.idle) {
      const live = list.filter((c) => !c.closed && Date.now() - c.idleSince < IDLE_MS);
      for (const c of list) if (!live.includes(c)) c.close();
      if (live.length > 0) this.idle.set(origin, live);
      else this.idle.delete(origin);
    }
    if (this.idle.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}

const SAFE_FIELD_VALUE = /^[^\r\n\0]*$/;

function encodeRequest(url: URL, fields: Record<string, string>, body: string): Buffer {
  let head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const name in fields) {
    const value = fields[name]!;
    // ours, but a value with a line break would be a second header or a second request
    if (!SAFE_FIELD_VALUE.test(value)) throw new HttpPostError(`header ${name} holds a line break`);
    head += `${name}: ${value}\r\n`;
  }
  // one string, one encoding: the head is ASCII, so its UTF-8 is itself
  return Buffer.from(`${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

interface Exchange {
  reply: PostReply;
  reusable: boolean;
}

interface Waiter {
  resolve(x: Exchange): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const HANDLERS: SocketHandler<HttpConnection> = {
  open: (s) => s.data.opened(s),
  handshake: (s, ok, error) => s.data.handshaken(ok, error),
  data: (s, chunk) => s.data.received(chunk),
  drain: (s) => s.data.writer?.drain(),
  close: (s, error) => s.data.closedBy(error),
  error: (s, error) => s.data.failed(error),
  connectError: (s, error) => s.data.failed(error),
};

class HttpConnection {
  writer: SocketWriter | undefined;
  closed = false;
  idleSince = 0;
  private socket: Socket<HttpConnection> | undefined;
  private ready: { resolve(): void; reject(err: Error): void } | undefined;
  private waiter: Waiter | undefined;
  private pending: Buffer | undefined;
  private head: ResponseHead | undefined;
  private bodyLeft = 0;
  private heardAny = false;
  private error: Error | undefined;

  private constructor(
    private readonly host: string,
    private readonly tls: boolean,
  ) {}

  static async open(url: URL, ca: string[] | undefined, deadline: number): Promise<HttpConnection> {
    const https = url.protocol === "https:";
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const conn = new HttpConnection(url.host, https);
    const ready = new Promise<void>((resolve, reject) => {
      conn.ready = { resolve, reject };
    });
    const timer = setTimeout(() => {
      conn.ready?.reject(new HttpPostError(`timed out connecting to ${url.host}`, true));
      conn.close();
    }, deadline - Date.now());
    try {
      // both at once: the connection may fail (and `ready` reject) before connect() resolves
      await Promise.all([
        Bun.connect<HttpConnection>({
          hostname: host,
          port: Number(url.port || (https ? 443 : 80)),
          data: conn,
          socket: HANDLERS,
          tls: https ? { serverName: host, rejectUnauthorized: true, ...(ca ? { ca } : {}) } : undefined,
        }).catch((err: Error) => conn.failed(err)),
        ready,
      ]);
      return conn;
    } finally {
      clearTimeout(timer);
      conn.ready = undefined;
    }
  }

  opened(socket: Socket<HttpConnection>): void {
    this.socket = socket;
    this.writer = new SocketWriter(socket as Socket<unknown>);
    if (this.closed) socket.end();
    else if (!this.tls) this.ready?.resolve();
  }

  handshaken(ok: boolean, error: Error | null): void {
    if (ok) this.ready?.resolve();
    else {
      this.ready?.reject(new HttpPostError(`TLS: ${error?.message ?? "the certificate was not accepted"}`));
      this.close();
    }
  }

  request(bytes: Buffer, deadline: number): Promise<Exchange> {
    this.socket?.ref();
    return new Promise<Exchange>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(new HttpPostError("timed out", true));
        this.close();
      }, deadline - Date.now());
      this.waiter = { resolve, reject, timer };
      this.pending = undefined;
      this.head = undefined;
      this.heardAny = false;
      if (this.closed) this.settle(new ClosedUnanswered("the connection was closed"));
      else this.writer!.write(bytes);
    });
  }

  idle(): void {
    this.idleSince = Date.now();
    this.socket?.unref();
  }

  received(chunk: Buffer): void {
    if (!this.waiter) {
      // a server that speaks unasked, between requests: nothing to trust the connection for
      this.close();
      return;
    }
    this.heardAny = true;
    if (this.head) {
      this.countBody(chunk.length);
      return;
    }
    this.pending = this.pending ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk);
    try {
      for (;;) {
        const head = parseResponseHead(this.pending);
        if (!head) return;
        this.pending = this.pending.subarray(head.size);
        // an interim answer (100 Continue, 103 Early Hints): the final one follows
        if (head.status >= 200) {
          this.head = head;
          break;
        }
      }
    } catch (err) {
      this.settle(err as Error);
      this.close();
      return;
    }
    const framing = bodyFraming(this.head);
    if (framing.kind === "unread") {
      this.settle({ reply: this.reply(), reusable: false });
      return;
    }
    this.bodyLeft = framing.kind === "length" ? framing.bytes : 0;
    const rest = this.pending.length;
    this.pending = undefined;
    this.countBody(rest);
  }

  closedBy(error: Error | undefined): void {
    this.closed = true;
    this.ready?.reject(
      new HttpPostError(`connection closed: ${(error ?? this.error)?.message ?? "by the server"}`),
    );
    if (!this.waiter) return;
    if (this.head) this.settle({ reply: this.reply(), reusable: false });
    else if (!this.heardAny) this.settle(new ClosedUnanswered("the connection closed before a reply"));
    else this.settle(new HttpPostError("the connection closed in the middle of the reply's head"));
  }

  failed(error: Error): void {
    this.error = error;
    const code = (error as { code?: string }).code;
    this.ready?.reject(
      new HttpPostError(`connecting to ${this.host}: ${error.message}${code ? ` (${code})` : ""}`),
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.end();
  }

  private countBody(bytes: number): void {
    this.bodyLeft -= bytes;
    if (this.bodyLeft > 0) return;
    // bytes past the body were not asked for: the connection is not trusted with another request
    this.settle({ reply: this.reply(), reusable: this.head!.keepAlive && this.bodyLeft === 0 });
  }

  private reply(): PostReply {
    const head = this.head!;
    return { status: head.status, reason: head.reason, location: head.fields.get("location") };
  }

  private settle(outcome: Exchange | Error): void {
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = undefined;
    clearTimeout(waiter.timer);
    if (outcome instanceof Error) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }
}
