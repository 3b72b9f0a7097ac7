// One query to one server, over UDP or TCP. `accept` decides whether a received message is the
// answer (and decodes it); the caller owns the meaning of the answer.
import { connect } from "node:net";
import type { udp } from "bun";
import { TransportError } from "./errors.ts";
import { type DnsServer, formatServer } from "./servers.ts";

export type Accept<T> = (message: Buffer) => T | undefined;

/**
 * A UDP socket serves this many queries, then is closed once their answers are in: a socket per
 * query (creating and closing it) cost a third of the CPU an inbound message's look-ups take
 * (bench/RESULTS.md, issue 16). Each new socket gets a new OS-randomised source port, so a forger
 * must still guess a port that changes every few queries, as well as the random query id.
 */
const QUERIES_PER_SOCKET = 32;

interface Waiter {
  message(message: Buffer, from: { address: string; port: number }): void;
  error(error: Error): void;
}

/**
 * One UDP socket shared by up to QUERIES_PER_SOCKET queries; answers go to their query by id.
 * Bun's own UDP socket, not node:dgram: an exchange costs half the CPU (19 against 40 µs, measured
 * against bench/dns-senders.ts), and a spread inbound message makes three or four.
 */
class SharedUdpSocket {
  /** Until Bun has bound it; the queries sent meanwhile wait for it. */
  private socket: udp.Socket<"buffer"> | Promise<udp.Socket<"buffer">>;
  private readonly waiting = new Map<number, Set<Waiter>>();
  private sent = 0;
  private broken = false;

  constructor(
    family: 4 | 6,
    private readonly retired: (s: SharedUdpSocket) => void,
  ) {
    this.socket = Bun.udpSocket({
      hostname: family === 6 ? "::" : "0.0.0.0",
      socket: {
        data: (_socket, message, port, address) => {
          if (message.length < 2) return;
          for (const w of this.waiting.get(message.readUInt16BE(0)) ?? [])
            w.message(message, { address, port });
        },
        // a socket error ends every exchange on it (theirs is asked again, on a new socket), and
        // the socket. Bun passes no error for an ICMP port unreachable (the server is not there).
        error: (_socket, error) => this.fail(error ?? unreachable()),
      },
    }).then((socket) => {
      // an idle socket kept for the next query must not keep the process alive
      socket.unref();
      this.socket = socket;
      return socket;
    });
    this.socket.catch((error: Error) => this.fail(error));
  }

  get full(): boolean {
    return this.broken || this.sent >= QUERIES_PER_SOCKET;
  }

  /** Sends `query` and passes datagrams carrying its id to `waiter` until the returned function is called. */
  exchange(server: DnsServer, query: Buffer, waiter: Waiter): () => void {
    const id = query.readUInt16BE(0);
    const waiters = this.waiting.get(id) ?? new Set<Waiter>();
    this.waiting.set(id, waiters);
    waiters.add(waiter);
    if (++this.sent >= QUERIES_PER_SOCKET) this.retired(this);
    const send = (socket: udp.Socket<"buffer">) => {
      try {
        if (!socket.send(query, server.port, server.host)) waiter.error(new Error("the send buffer is full"));
      } catch (error) {
        waiter.error(error as Error);
      }
    };
    if (this.socket instanceof Promise) this.socket.then(send, () => {});
    else send(this.socket);
    return () => {
      waiters.delete(waiter);
      if (waiters.size === 0) this.waiting.delete(id);
      this.closeWhenIdle();
    };
  }

  private fail(error: Error): void {
    this.broken = true;
    this.retired(this);
    for (const waiters of [...this.waiting.values()]) for (const w of [...waiters]) w.error(error);
    this.closeWhenIdle();
  }

  private closeWhenIdle(): void {
    if (!this.full || this.waiting.size > 0) return;
    const close = (socket: udp.Socket<"buffer">) => {
      // the last exchange can end after an error closed it
      if (!socket.closed) socket.close();
    };
    if (this.socket instanceof Promise) this.socket.then(close, () => {});
    else close(this.socket);
  }
}

function unreachable(): NodeJS.ErrnoException {
  return Object.assign(new Error("port unreachable"), { code: "ECONNREFUSED" });
}

/**
 * By server: an ICMP error names no query, so it ends every exchange on its socket, and those
 * should be this server's alone.
 */
const openSockets = new Map<string, SharedUdpSocket>();

function sharedSocket(server: DnsServer): SharedUdpSocket {
  const key = formatServer(server);
  const open = openSockets.get(key);
  if (open !== undefined && !open.full) return open;
  const fresh = new SharedUdpSocket(server.family, (s) => {
    if (openSockets.get(key) === s) openSockets.delete(key);
  });
  openSockets.set(key, fresh);
  return fresh;
}

/**
 * Sends `query` in one datagram and waits up to `timeoutMs` for a datagram from the server that
 * `accept` takes. Anything else that arrives is ignored: answering first with a forged datagram
 * must not be enough.
 */
export function exchangeUdp<T>(
  server: DnsServer,
  query: Buffer,
  timeoutMs: number,
  accept: Accept<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const finish = settleOnce<T>(resolve, reject, () => {
      clearTimeout(timer);
      stop();
    });
    const timer = setTimeout(
      () => finish(new TransportError("ETIMEOUT", `no answer from ${formatServer(server)} over UDP`)),
      timeoutMs,
    );
    const stop = sharedSocket(server).exchange(server, query, {
      message: (message, from) => {
        if (from.port !== server.port || !sameAddress(from.address, server.host)) return;
        const value = accept(message);
        if (value !== undefined) finish(undefined, value);
      },
      error: (error: NodeJS.ErrnoException) => {
        const code = error.code === "ECONNREFUSED" ? "ECONNREFUSED" : "EBADRESP";
        finish(new TransportError(code, `${formatServer(server)} over UDP: ${error.message}`));
      },
    });
  });
}

/**
 * The same query over TCP (RFC 1035 4.2.2: each message behind a two-byte length), used when the
 * UDP answer came truncated. One connection per query: truncation is rare enough.
 */
export function exchangeTcp<T>(
  server: DnsServer,
  query: Buffer,
  timeoutMs: number,
  accept: Accept<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const socket = connect({ host: server.host, port: server.port, family: server.family });
    let received = Buffer.alloc(0);
    const finish = settleOnce<T>(resolve, reject, () => {
      clearTimeout(timer);
      socket.destroy();
    });
    const timer = setTimeout(
      () => finish(new TransportError("ETIMEOUT", `no answer from ${formatServer(server)} over TCP`)),
      timeoutMs,
    );
    socket.on("connect", () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(query.length);
      socket.write(Buffer.concat([length, query]));
    });
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const size = received.readUInt16BE(0);
      if (received.length < 2 + size) return;
      const value = accept(received.subarray(2, 2 + size));
      // on a connection of our own, a message that is not the answer means a broken server
      if (value === undefined)
        finish(new TransportError("EBADRESP", `bad answer from ${formatServer(server)}`));
      else finish(undefined, value);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      const code = error.code === "ECONNREFUSED" ? "ECONNREFUSED" : "EBADRESP";
      finish(new TransportError(code, `${formatServer(server)} over TCP: ${error.message}`));
    });
    socket.on("close", () =>
      finish(new TransportError("EBADRESP", `${formatServer(server)} closed the TCP connection early`)),
    );
  });
}

// The address a datagram comes from is printed in canonical form; the configured one may be
// written otherwise (IPv6 zero compression or upper case, a %zone, an IPv4-mapped address).
function sameAddress(from: string, configured: string): boolean {
  return canonicalAddress(from) === canonicalAddress(configured);
}

function canonicalAddress(address: string): string {
  const a = address.replace(/%.*$/, "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
  if (!a.includes(":")) return a;
  try {
    // the WHATWG URL parser writes IPv6 hosts in the RFC 5952 form
    return new URL(`http://[${a}]/`).hostname;
  } catch {
    return a.toLowerCase();
  }
}

/** The first outcome settles the exchange (after `cleanup`); later ones (a late answer, a close) are ignored. */
function settleOnce<T>(
  resolve: (value: T) => void,
  reject: (error: Error) => void,
  cleanup: () => void,
): (error: Error | undefined, value?: T) => void {
  let done = false;
  return (error, value) => {
    if (done) return;
    done = true;
    cleanup();
    if (error) reject(error);
    else resolve(value as T);
  };
}
