// The gateway in the test process: startServer on loopback, free ports, a fresh data dir, DNS
// only to loopback (checks off unless a test turns them on), quiet logs.
import { parseConfig } from "../../src/config.ts";
import { type RunningServer, startServer } from "../../src/serve.ts";
import { tempDir } from "./cli.ts";

export function startTestServer(vars: Record<string, string>): Promise<RunningServer> {
  return startServer(
    parseConfig({
      POSTERN_DATA_DIR: tempDir(),
      POSTERN_LISTEN: "127.0.0.1",
      POSTERN_SMTP_PORT: "0",
      POSTERN_SUBMISSION_PORT: "0",
      POSTERN_SUBMISSIONS_PORT: "0",
      POSTERN_HTTPS_PORT: "0",
      POSTERN_HTTP_PORT: "0",
      POSTERN_LOG_LEVEL: "error",
      POSTERN_DNS_SERVERS: "127.0.0.1:9",
      POSTERN_DNS_CHECKS: "off",
      // Every test client is 127.0.0.1: per-IP message rates are tested on their own.
      POSTERN_INBOUND_PER_MINUTE: "0",
      ...vars,
    }),
  );
}

/** Polls `check` until it returns something other than undefined. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await check();
    if (v !== undefined) return v;
    await Bun.sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}
