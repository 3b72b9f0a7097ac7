// Starts `postern serve` as a subprocess and waits until /healthz answers.
import { CLI } from "./cli.ts";

export interface ServeProcess {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  httpPort: number;
  /** Inbound MX, submission (STARTTLS) and submissions (implicit TLS) ports. */
  smtpPort: number;
  submissionPort: number;
  submissionsPort: number;
  /** SIGTERM, then the exit status. */
  stop(): Promise<number>;
}

export async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/** Resolves once 127.0.0.1:`port` takes connections; throws if `proc` exits or 15 s pass first. */
export async function waitListening(port: number, proc: Bun.Subprocess, name: string): Promise<void> {
  const deadline = Date.now() + 15000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${name} exited (status ${proc.exitCode})`);
    const up = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (s) => {
        s.end();
        return true;
      },
      () => false,
    );
    if (up) return;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`${name} did not start listening`);
    }
    await Bun.sleep(50);
  }
}

/** Starts serve on free loopback ports (those `env` does not fix). */
export async function startServe(env: Record<string, string>, timeoutMs = 20000): Promise<ServeProcess> {
  const port = async (name: string) => Number(env[name] ?? (await freePort()));
  const httpPort = await port("POSTERN_HTTP_PORT");
  const smtpPort = await port("POSTERN_SMTP_PORT");
  const submissionPort = await port("POSTERN_SUBMISSION_PORT");
  const submissionsPort = await port("POSTERN_SUBMISSIONS_PORT");
  const httpsPort = await port("POSTERN_HTTPS_PORT");
  const proc = Bun.spawn([process.execPath, CLI, "serve"], {
    env: {
      POSTERN_LISTEN: "127.0.0.1",
      // Tests speak DNS only to their own servers on loopback; checks are on where a test asks.
      POSTERN_DNS_SERVERS: "127.0.0.1:9",
      POSTERN_DNS_CHECKS: "off",
      // Every test client is 127.0.0.1: per-IP message rates are tested on their own.
      POSTERN_INBOUND_PER_MINUTE: "0",
      ...env,
      POSTERN_HTTP_PORT: String(httpPort),
      POSTERN_SMTP_PORT: String(smtpPort),
      POSTERN_SUBMISSION_PORT: String(submissionPort),
      POSTERN_SUBMISSIONS_PORT: String(submissionsPort),
      POSTERN_HTTPS_PORT: String(httpsPort),
    },
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
        smtpPort,
        submissionPort,
        submissionsPort,
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
