// Starts `postern serve` as a subprocess and waits until /healthz answers.
import { CLI } from "./cli.ts";

export interface ServeProcess {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  httpPort: number;
  /** SIGTERM, then the exit status. */
  stop(): Promise<number>;
}

export async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export async function startServe(env: Record<string, string>, timeoutMs = 20000): Promise<ServeProcess> {
  const httpPort = Number(env.POSTERN_HTTP_PORT ?? (await freePort()));
  const proc = Bun.spawn([process.execPath, CLI, "serve"], {
    env: { POSTERN_LISTEN: "127.0.0.1", ...env, POSTERN_HTTP_PORT: String(httpPort) },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null)
      throw new Error(`serve exited ${proc.exitCode}: ${await new Response(proc.stderr).text()}`);
    const ok = await fetch(`http://127.0.0.1:${httpPort}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) {
      return {
        proc,
        httpPort,
        async stop() {
          proc.kill("SIGTERM");
          return proc.exited;
        },
      };
    }
    await Bun.sleep(100);
  }
  proc.kill("SIGKILL");
  throw new Error("serve did not answer /healthz in time");
}
