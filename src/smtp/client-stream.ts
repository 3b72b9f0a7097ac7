// What the SMTP client needs of a connection, so that it can be handed one: a duplex it writes
// to (with backpressure: write() false means wait for "drain") and hears "data", "error" and
// "close" from. TCP and TLS sockets are such streams, and so is an in-memory pair in tests.
import type { Duplex } from "node:stream";

export type ClientStream = Duplex & { readonly remoteAddress?: string | undefined };

export interface TlsClientStream extends ClientStream {
  getProtocol(): string | null;
  getCipher(): { name: string } | undefined;
  /** node:tls's verdict on the certificate (chain and host name), as its TLSSocket reports it. */
  readonly authorized?: boolean;
  readonly authorizationError?: Error | string | null;
}

/**
 * Starts TLS on a connected stream (after STARTTLS's 220) and resolves once the handshake is
 * done; rejects when it fails. A certificate that does not verify does not fail the handshake:
 * it is reported (`authorized`), and the caller's policy decides (RFC 7435, RFC 8461).
 */
export type StartTls = (plain: ClientStream, servername: string | undefined) => Promise<TlsClientStream>;

/**
 * `start` is given settle functions and may return a clean-up; the promise rejects with
 * `onTimeout()` when it has not settled within `ms`. The one timeout of the client: every wait
 * (connect, a reply, room to write, a TLS handshake) goes through it.
 */
export function withTimeout<T>(
  ms: number,
  onTimeout: () => Error,
  start: (resolve: (v: T) => void, reject: (e: Error) => void) => (() => void) | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let cleanUp: (() => void) | undefined;
    let settled = false;
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      cleanUp?.();
    };
    const timer = setTimeout(() => {
      if (settled) return;
      finish();
      reject(onTimeout());
    }, ms);
    cleanUp = start(
      (v) => {
        if (settled) return;
        finish();
        resolve(v);
      },
      (e) => {
        if (settled) return;
        finish();
        reject(e);
      },
    );
    if (settled) cleanUp?.();
  });
}
