// pebble (Debian's test ACME server, `apt-get install pebble`) for a test: its HTTPS API on free
// loopback ports with a certificate from a throwaway CA, HTTP-01 checks sent to 127.0.0.1:httpPort
// with names resolved through the test's DNS server. Stopped by its PID.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./cli.ts";
import { freePort } from "./serve.ts";
import { makeTestCa } from "./test-ca.ts";

const PEBBLE = "/usr/bin/pebble";
export const havePebble = existsSync(PEBBLE);

export interface Pebble {
  directoryUrl: string;
  /** The CA of pebble's own API certificate: what POSTERN_ACME_CA_FILE would hold. */
  apiCaPem: string;
  /** The root pebble issues under (made anew at every start). */
  issuingRoots(): Promise<string>;
  /** pebble's log so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export async function startPebble(o: {
  /** Where HTTP-01 checks go (our responder's port on 127.0.0.1). */
  httpPort: number;
  /** The DNS server pebble resolves names with, "127.0.0.1:PORT" (startDnsServer's spec). */
  dnsSpec: string;
  timeoutMs?: number;
}): Promise<Pebble> {
  const dir = tempDir("postern-pebble-");
  const ca = makeTestCa("Pebble API Test CA");
  const api = ca.issue(["localhost", "127.0.0.1"]);
  writeFileSync(join(dir, "cert.pem"), api.cert);
  writeFileSync(join(dir, "key.pem"), api.key);
  const port = await freePort();
  const managementPort = await freePort();
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: join(dir, "cert.pem"),
        privateKey: join(dir, "key.pem"),
        httpPort: o.httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const proc = Bun.spawn([PEBBLE, "-config", join(dir, "config.json"), "-dnsserver", o.dnsSpec], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      // validate at once, never reject a good nonce, and never reuse an earlier order's
      // authorization (by default half are reused): every order is checked the same way
      PEBBLE_VA_NOSLEEP: "1",
      PEBBLE_WFE_NONCEREJECT: "0",
      PEBBLE_AUTHZREUSE: "0",
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  // drained all along: a full pipe would stall pebble mid-test
  let log = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) log = (log + decoder.decode(chunk)).slice(-20_000);
  };
  void drain(proc.stdout).catch(() => {});
  void drain(proc.stderr).catch(() => {});

  const directoryUrl = `https://127.0.0.1:${port}/dir`;
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  for (;;) {
    const ok = await fetch(directoryUrl, { tls: { ca: ca.pem } }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw new Error(`pebble did not start: ${log.trim()}`);
    }
    await Bun.sleep(50);
  }
  return {
    directoryUrl,
    apiCaPem: ca.pem,
    issuingRoots: async () => {
      const res = await fetch(`https://127.0.0.1:${managementPort}/roots/0`, { tls: { ca: ca.pem } });
      if (!res.ok) throw new Error(`pebble roots: HTTP ${res.status}`);
      return res.text();
    },
    output: () => log,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
