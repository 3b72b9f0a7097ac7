// Bun.listen glue for one SMTP port: connection limits, TLS (STARTTLS and implicit),
// timeouts, and partial writes. Every SMTP rule lives in the session.
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { errorMessage, type Logger } from "../log.ts";
import type { ConnectionTrack, SmtpMetrics } from "../metrics/postern.ts";
import type { ServerTlsOptions } from "../net/tls.ts";
import { SocketWriter } from "../net/writer.ts";
import { formatReply, R } from "./reply.ts";
import {
  type PortKind,
  type SessionBackend,
  type SessionClock,
  type SessionPolicy,
  SmtpSession,
} from "./session.ts";

/** A TLS handshake takes a few round trips: a client that needs longer is holding a slot. */
const HANDSHAKE_TIMEOUT_SECONDS = 20;

export interface ConnectionLimits {
  total: number;
  perIp: number;
}

/** Shared by every port, so the limits count connections across them. */
export class ConnectionCounter {
  private total = 0;
  private readonly byIp = new Map<string, number>();

  constructor(private readonly limits: ConnectionLimits) {}

  /** Counts the connection in, or says which limit it would break. */
  admit(ip: string): "ok" | "total" | "perIp" {
    if (this.total >= this.limits.total) return "total";
    const n = this.byIp.get(ip) ?? 0;
    if (n >= this.limits.perIp) return "perIp";
    this.total++;
    this.byIp.set(ip, n + 1);
    return "ok";
  }

  release(ip: string): void {
    this.total--;
    const n = (this.byIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.byIp.delete(ip);
    else this.byIp.set(ip, n);
  }

  get open(): number {
    return this.total;
  }
}

interface Connection {
  session: SmtpSession | undefined;
  writer: SocketWriter | undefined;
  ip: string;
  admitted: boolean;
  released: boolean;
  /** The plain socket after STARTTLS: it still sees the ciphertext, which is not ours to read. */
  superseded: boolean;
  /** Metrics of this connection; shared by its plain and TLS sockets. */
  track: ConnectionTrack | undefined;
  openedAt: number;
  /** When the current wait ends (ms since epoch). */
  deadline: number;
}

/** Bun's socket.timeout never fires above 240 s (measured): longer waits are re-armed in steps. */
const MAX_BUN_TIMEOUT_SECONDS = 240;

export interface ListenerOptions {
  hostname: string;
  port: number;
  kind: PortKind;
  policy: SessionPolicy;
  backend: SessionBackend;
  clock: SessionClock;
  /** The certificate to serve to a new TLS connection (it may change while we run). */
  tls: (() => ServerTlsOptions) | undefined;
  counter: ConnectionCounter;
  log: Logger;
  /** The longest single socket timer (tests shorten it to see the re-arming). */
  maxTimerSeconds?: number;
  /** Time allowed for a TLS handshake (implicit or after STARTTLS); tests shorten it. */
  handshakeTimeoutSeconds?: number;
  /** Counts connections, sessions and their outcomes, AUTH failures. */
  metrics?: SmtpMetrics;
  /** How long a commit may take before its session is answered 451: `stop` waits that long for one. */
  commitDeadlineMs?: number;
}

export interface SmtpListener {
  port: number;
  /**
   * Stops accepting; open sessions finish the command in progress, are told 421 and closed.
   * Resolves when they are gone, or after `graceMs` with the stragglers cut off; a session still
   * answering a command (a commit in progress) is waited for up to the enqueue deadline, so that
   * no commit lands after its session was cut.
   */
  stop(graceMs?: number): Promise<void>;
}

export function listenSmtp(opts: ListenerOptions): SmtpListener {
  const maxTimer = opts.maxTimerSeconds ?? MAX_BUN_TIMEOUT_SECONDS;
  const armTimeout = (socket: Socket<Connection>, conn: Connection, seconds: number) => {
    conn.deadline = Date.now() + seconds * 1000;
    socket.timeout(Math.min(seconds, maxTimer));
  };
  const implicitTls = opts.kind === "submissions";
  if (implicitTls && !opts.tls) throw new Error("port 465 needs a TLS certificate");
  // One policy for 465 and STARTTLS on 25 and 587 alike, and one way in: a plain socket upgraded
  // (on 465 at once), so each new connection gets the certificate in service at that moment.
  const tls = opts.tls;
  const sessions = new Set<SmtpSession>();
  const handshakeTimeout = opts.handshakeTimeoutSeconds ?? HANDSHAKE_TIMEOUT_SECONDS;

  const release = (conn: Connection) => {
    if (conn.admitted && !conn.released) {
      conn.released = true;
      opts.counter.release(conn.ip);
    }
  };

  /**
   * Counts the connection from accept, before any TLS: a client that never finishes the handshake
   * holds a slot like any other (else a flood of silent connections to 465 escapes every limit).
   */
  const admit = (socket: Socket<Connection>, conn: Connection): boolean => {
    const admission = opts.counter.admit(conn.ip);
    if (admission === "ok") {
      conn.admitted = true;
      return true;
    }
    conn.track?.mark("refused_limit");
    // On 465 no reply can be sent before a handshake, and a client over the limit gets none.
    if (implicitTls) socket.terminate();
    else {
      socket.write(formatReply(admission === "total" ? R.tooManyConnections() : R.tooManyFromYou()));
      socket.end();
    }
    return false;
  };

  const begin = (
    socket: Socket<Connection>,
    conn: Connection,
    tlsInfo: { protocol: string; cipher: string } | undefined,
  ) => {
    const writer = new SocketWriter(socket as Socket<unknown>);
    conn.writer = writer;
    const session = new SmtpSession(
      opts.policy,
      opts.backend,
      {
        send: (text) => writer.write(text),
        event: (e) => conn.track?.event(e),
        close: () => writer.end(),
        startTls: () => upgrade(socket, conn),
        fault: (err) =>
          opts.log.warn("smtp step failed: answered 4xx", {
            port: opts.kind,
            ip: conn.ip,
            error: errorMessage(err),
          }),
      },
      opts.clock,
      conn.ip,
      tlsInfo,
    );
    conn.session = session;
    sessions.add(session);
    armTimeout(socket, conn, session.timeoutSeconds);
    session.greet();
  };

  const upgrade = (socket: Socket<Connection>, conn: Connection) => {
    conn.superseded = true;
    const next: Connection = { ...conn, superseded: false };
    try {
      const [, tlsSocket] = socket.upgradeTLS<Connection>({
        data: next,
        tls: tls!(),
        socket: tlsHandlers,
      });
      // On 465 no session has begun yet: it begins in `handshake`, on the TLS socket.
      conn.writer?.retarget(tlsSocket as Socket<unknown>);
      // The plain side no longer owns the connection's slot: the TLS side releases it.
      conn.admitted = false;
      // The plain socket's timer does not carry over to the TLS one: without this, a client
      // that sends STARTTLS and then nothing (or stops after the handshake) is never timed out.
      armTimeout(tlsSocket, next, handshakeTimeout);
    } catch (err) {
      opts.log.warn(implicitTls ? "tls failed" : "starttls failed", { ip: conn.ip, error: String(err) });
      // Still ours: its close releases the slot.
      conn.superseded = false;
      conn.track?.mark("tls_failed");
      socket.end();
    }
  };

  const common: Pick<SocketHandler<Connection>, "data" | "drain" | "close" | "timeout" | "error"> = {
    data(socket, chunk) {
      const conn = socket.data;
      if (conn.superseded || !conn.session) return;
      conn.session.receive(chunk);
      armTimeout(socket, conn, conn.session.timeoutSeconds);
    },
    drain(socket) {
      if (!socket.data.superseded) socket.data.writer?.drain();
    },
    close(socket) {
      const conn = socket.data;
      if (conn.superseded) return;
      if (conn.session) sessions.delete(conn.session);
      release(conn);
      const outcome = conn.track?.ended();
      opts.log.info("smtp session end", {
        port: opts.kind,
        ip: conn.ip,
        outcome,
        durationMs: Math.round(performance.now() - conn.openedAt),
      });
    },
    timeout(socket) {
      const conn = socket.data;
      if (conn.superseded) return;
      // Bun's timer was capped (see armTimeout): not yet our deadline, wait the rest.
      const left = conn.deadline - Date.now();
      if (left > 1000) {
        socket.timeout(Math.min(Math.ceil(left / 1000), maxTimer));
        return;
      }
      if (!conn.session) {
        conn.track?.mark("timeout");
        socket.end();
        return;
      }
      conn.session.timedOut();
      // A peer that left its replies unread for a whole timeout will not read the 421 either:
      // waiting to flush it would keep the connection (and its slot) forever.
      if ((conn.writer?.buffered ?? 0) > 0) socket.terminate();
    },
    error(socket, err) {
      opts.log.debug("smtp socket error", { ip: socket.data.ip, error: err.message });
    },
  };

  const tlsHandlers: SocketHandler<Connection> = {
    ...common,
    handshake(socket, success, authorizationError) {
      const conn = socket.data;
      if (!success && authorizationError && !isClientCertError(authorizationError)) {
        conn.track?.mark("tls_failed");
        socket.end();
        return;
      }
      const cipher = socket.getCipher();
      const info = { protocol: socket.getTLSVersion(), cipher: cipher.name };
      if (conn.session) {
        conn.session.tlsStarted(info);
        armTimeout(socket, conn, conn.session.timeoutSeconds);
      } else begin(socket, conn, info);
    },
  };

  const open = (socket: Socket<Connection>) => {
    socket.data = {
      session: undefined,
      writer: undefined,
      ip: socket.remoteAddress,
      admitted: false,
      released: false,
      superseded: false,
      track: opts.metrics?.connectionOpened(opts.kind),
      openedAt: performance.now(),
      deadline: 0,
    };
    if (!admit(socket, socket.data)) return;
    if (implicitTls) upgrade(socket, socket.data);
    else begin(socket, socket.data, undefined);
  };

  const listener: TCPSocketListener<Connection> = Bun.listen<Connection>({
    hostname: opts.hostname,
    port: opts.port,
    socket: { ...common, open },
  });

  return {
    port: listener.port,
    async stop(graceMs = 10_000) {
      listener.stop(false);
      for (const s of sessions) s.shutdown();
      const started = Date.now();
      const busyGraceMs = Math.max(graceMs, opts.commitDeadlineMs ?? 0);
      const waiting = () => {
        const elapsed = Date.now() - started;
        for (const s of sessions) if (elapsed < (s.busy ? busyGraceMs : graceMs)) return true;
        return false;
      };
      while (waiting()) await Bun.sleep(20);
      listener.stop(true);
    },
  };
}

/** We ask no client certificate, so a verification complaint about one is not a failure. */
function isClientCertError(err: Error): boolean {
  return /certificate/i.test(err.message);
}
