// The control socket: while `serve` holds the embedded database, CLI verbs are run inside the
// server on the client's behalf (like Postfix's postqueue talking to the queue manager).
// Protocol: the client sends one JSON request line, the server answers with one JSON line.
import { chmodSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Socket } from "bun";

export interface ControlRequest {
  argv: string[];
  stdin: string;
}

export interface ControlResponse {
  code: number;
  stdout: string;
  stderr: string;
}

const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, "control.sock");
}

export function serveControlSocket(path: string, run: (req: ControlRequest) => Promise<ControlResponse>) {
  rmSync(path, { force: true }); // a socket file left by a killed server; we hold the lock now
  const buffers = new WeakMap<Socket<undefined>, string>();
  const listener = Bun.listen<undefined>({
    unix: path,
    socket: {
      data(socket, chunk) {
        const text = (buffers.get(socket) ?? "") + chunk.toString("utf8");
        const newline = text.indexOf("\n");
        if (newline < 0) {
          if (text.length > MAX_REQUEST_BYTES) socket.end();
          else buffers.set(socket, text);
          return;
        }
        buffers.delete(socket);
        let request: ControlRequest;
        try {
          request = JSON.parse(text.slice(0, newline));
        } catch {
          socket.end(`${JSON.stringify({ code: 2, stdout: "", stderr: "malformed control request\n" })}\n`);
          return;
        }
        run(request).then(
          (res) => writeAll(socket, `${JSON.stringify(res)}\n`),
          (err) => writeAll(socket, `${JSON.stringify({ code: 1, stdout: "", stderr: `${err}\n` })}\n`),
        );
      },
      drain(socket) {
        flush(socket);
      },
    },
  });
  chmodSync(path, 0o600);
  return {
    stop() {
      listener.stop(true);
      rmSync(path, { force: true });
    },
  };
}

const pending = new WeakMap<Socket<undefined>, Uint8Array>();

// socket.write may take only part of a buffer; the rest goes out from `drain`.
function writeAll(socket: Socket<undefined>, text: string) {
  pending.set(socket, new TextEncoder().encode(text));
  flush(socket);
}

function flush(socket: Socket<undefined>) {
  const rest = pending.get(socket);
  if (!rest) return;
  const written = socket.write(rest);
  if (written >= rest.length) {
    pending.delete(socket);
    socket.end();
  } else if (written > 0) {
    pending.set(socket, rest.subarray(written));
  }
}

/** Sends one request to a running server; rejects when no server listens there. */
export async function callControlSocket(path: string, request: ControlRequest): Promise<ControlResponse> {
  const { promise, resolve, reject } = Promise.withResolvers<ControlResponse>();
  let received = "";
  const socket = await Bun.connect({
    unix: path,
    socket: {
      data(_s, chunk) {
        received += chunk.toString("utf8");
      },
      close() {
        try {
          resolve(JSON.parse(received));
        } catch {
          reject(new Error("the server closed the control socket without an answer"));
        }
      },
      error(_s, err) {
        reject(err);
      },
    },
  });
  const bytes = new TextEncoder().encode(`${JSON.stringify(request)}\n`);
  let offset = 0;
  while (offset < bytes.length) {
    const n = socket.write(bytes.subarray(offset));
    offset += n;
    if (n === 0) await Bun.sleep(1);
  }
  return promise;
}
