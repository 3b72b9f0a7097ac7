// Connections for the SMTP client: a TCP connection to one address, and the TLS upgrade its
// STARTTLS uses. The protocol (smtp/client.ts) is handed the result and never dials itself.
import net from "node:net";
import tls from "node:tls";
import {
  CLIENT_TIMEOUTS,
  type ClientOptions,
  SmtpClientConnection,
  SmtpClientError,
} from "../smtp/client.ts";
import { type StartTls, type TlsClientStream, withTimeout } from "../smtp/client-stream.ts";

const ignore = () => {};

/** A TCP connection to `ip` (or `host`) on `port`, within `ms`. */
export function dialTcp(
  target: { host: string; ip?: string | undefined; port: number },
  ms: number,
): Promise<net.Socket> {
  const where = `${target.host}${target.ip ? `[${target.ip}]` : ""}:${target.port}`;
  const socket = net.connect({ host: target.ip ?? target.host, port: target.port });
  return withTimeout<net.Socket>(
    ms,
    () => new SmtpClientError("timeout", `cannot connect to ${where}: no answer within ${ms} ms`, "connect"),
    (resolve, reject) => {
      const onConnect = () => {
        socket.setNoDelay(true);
        resolve(socket);
      };
      const onError = (e: Error) =>
        reject(
          new SmtpClientError("connect", `cannot connect to ${where}: ${e.message}`, "connect", undefined, {
            cause: e,
          }),
        );
      socket.once("connect", onConnect);
      socket.once("error", onError);
      return () => {
        socket.off("connect", onConnect);
        socket.off("error", onError);
      };
    },
  ).catch((err: Error) => {
    socket.on("error", ignore);
    socket.destroy();
    throw err;
  });
}

/**
 * STARTTLS over node:tls, which wraps the connected socket (works under Bun). The certificate is
 * checked against the system's roots and `extraRoots` (POSTERN_EXTRA_CA_FILE) and the verdict
 * reported, never enforced here (see StartTls).
 */
export function startTlsTrusting(extraRoots: readonly string[]): StartTls {
  // One context for every connection: the roots are parsed once, not per handshake.
  const secureContext =
    extraRoots.length > 0
      ? tls.createSecureContext({ ca: [...tls.rootCertificates, ...extraRoots] })
      : undefined;
  return (plain, servername) => {
    const secure = tls.connect({
      socket: plain as net.Socket,
      servername,
      rejectUnauthorized: false,
      secureContext,
    });
    return new Promise<TlsClientStream>((resolve, reject) => {
      const fail = (e: Error) => {
        secure.off("secureConnect", ok);
        secure.on("error", ignore);
        secure.destroy();
        reject(e);
      };
      const ok = () => {
        secure.off("error", fail);
        secure.off("close", closed);
        resolve(secure);
      };
      const closed = () => fail(new Error("connection closed"));
      secure.once("secureConnect", ok);
      secure.once("error", fail);
      secure.once("close", closed);
    });
  };
}

export const startTlsOverTcp: StartTls = startTlsTrusting([]);

/** Dials, then opens an SMTP (or LMTP) session on the connection. */
export async function connectSmtp(opts: ClientOptions): Promise<SmtpClientConnection> {
  const socket = await dialTcp(opts, opts.timeouts?.connect ?? CLIENT_TIMEOUTS.connect);
  return SmtpClientConnection.open(socket, { ...opts, startTls: opts.startTls ?? startTlsOverTcp });
}
