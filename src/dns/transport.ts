// One query to one server, over UDP or TCP. `accept` decides whether a received message is the
// answer (and decodes it); the caller owns the meaning of the answer.
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { TransportError } from "./errors.ts";
import { type DnsServer, formatServer } from "./servers.ts";

export type Accept<T> = (message: Buffer) => T | undefined;

/**
 * Sends `query` in one datagram from a fresh socket (so a fresh, OS-randomised source port per
 * query) and waits up to `timeoutMs` for a datagram from the server that `accept` takes. Anything
 * else that arrives is ignored: answering first with a forged datagram must not be enough.
 */
export function exchangeUdp<T>(
  server: DnsServer,
  query: Buffer,
  timeoutMs: number,
  accept: Accept<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const socket = createSocket(server.family === 6 ? "udp6" : "udp4");
    const finish = settleOnce<T>(resolve, reject, () => {
      clearTimeout(timer);
      socket.close();
    });
    const timer = setTimeout(
      () => finish(new TransportError("ETIMEOUT", `no answer from ${formatServer(server)} over UDP`)),
      timeoutMs,
    );
    socket.on("message", (message, from) => {
      if (from.port !== server.port || !sameAddress(from.address, server.host)) return;
      const value = accept(message);
      if (value !== undefined) finish(undefined, value);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      const code = error.code === "ECONNREFUSED" ? "ECONNREFUSED" : "EBADRESP";
      finish(new TransportError(code, `${formatServer(server)} over UDP: ${error.message}`));
    });
    socket.send(query, server.port, server.host, (error) => {
      if (error) finish(new TransportError("ECONNREFUSED", `${formatServer(server)}: ${error.message}`));
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
