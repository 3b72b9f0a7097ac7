// Certificates replaced under a running `serve` (as certbot's deploy hook does, then SIGHUP): new
// connections on 465 and after STARTTLS on 25 and 587 get the new one at once, a session in
// progress keeps its own, and a pair that does not go together is refused (the old one stays).
// openssl makes the certificates and is the client that reads them back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { TlsStore } from "../../src/net/tls.ts";
import { tempDir } from "../helpers/cli.ts";
import { type ServeProcess, startServe } from "../helpers/serve.ts";
import { SmtpClient } from "../helpers/smtp-client.ts";

async function run(cmd: string[], input = ""): Promise<string> {
  const proc = Bun.spawn(cmd, { stdin: new TextEncoder().encode(input), stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15000);
  try {
    const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/** A self-signed certificate with this serial: cert and key files in `dir`. */
async function makeCert(dir: string, name: string, serial: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await run([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    "/CN=mx.example.test",
    "-set_serial",
    serial,
  ]);
  return { cert, key };
}

/** The serial of the certificate served on `port` (STARTTLS when `starttls`). */
async function servedSerial(port: number, starttls: boolean): Promise<string> {
  const pem = await run(
    ["openssl", "s_client", "-connect", `127.0.0.1:${port}`, ...(starttls ? ["-starttls", "smtp"] : [])],
    "",
  );
  const serial = await run(["openssl", "x509", "-noout", "-serial"], pem);
  return serial.trim().replace(/^serial=/, "");
}

describe("TLS certificates reloaded without a restart", () => {
  const dir = tempDir();
  let live: { cert: string; key: string };
  let a: { cert: string; key: string };
  let b: { cert: string; key: string };
  let serve: ServeProcess;

  beforeAll(async () => {
    a = await makeCert(dir, "a", "0xA1");
    b = await makeCert(dir, "b", "0xB2");
    live = { cert: join(dir, "live.crt"), key: join(dir, "live.key") };
    copyFileSync(a.cert, live.cert);
    copyFileSync(a.key, live.key);
    serve = await startServe({
      POSTERN_DATA_DIR: tempDir(),
      POSTERN_HOSTNAME: "mx.example.test",
      POSTERN_TLS_CERT: live.cert,
      POSTERN_TLS_KEY: live.key,
      POSTERN_LOG_LEVEL: "error",
    });
  });
  afterAll(async () => {
    await serve?.stop();
  });

  test("SIGHUP: 465, 587 and 25 serve the new certificate; an open session goes on; a mismatched pair is refused", async () => {
    expect(await servedSerial(serve.submissionsPort, false)).toBe("A1");
    expect(await servedSerial(serve.submissionPort, true)).toBe("A1");
    const open = await SmtpClient.connect(serve.submissionsPort, { tls: true });
    expect((await open.readReply()).code).toBe(220);

    copyFileSync(b.cert, live.cert);
    copyFileSync(b.key, live.key);
    serve.proc.kill("SIGHUP");
    await Bun.sleep(300);
    expect(await servedSerial(serve.submissionsPort, false)).toBe("B2");
    expect(await servedSerial(serve.submissionPort, true)).toBe("B2");
    expect(await servedSerial(serve.smtpPort, true)).toBe("B2");
    // the session opened under the old certificate is still served
    expect((await open.command("EHLO client.test")).code).toBe(250);
    await open.quit();

    // a certificate with another's key: refused, B stays in service, and the process lives
    copyFileSync(a.cert, live.cert);
    serve.proc.kill("SIGHUP");
    await Bun.sleep(300);
    expect(serve.proc.exitCode).toBeNull();
    expect(await servedSerial(serve.submissionsPort, false)).toBe("B2");
  }, 30000);

  test("without SIGHUP, changed files are noticed by their stamp; unchanged ones are not read again", async () => {
    const files = { cert: join(dir, "poll.crt"), key: join(dir, "poll.key") };
    copyFileSync(a.cert, files.cert);
    copyFileSync(a.key, files.key);
    const store = await TlsStore.load({
      tlsCert: files.cert,
      tlsKey: files.key,
      dataDir: tempDir(),
      hostname: "mx.example.test",
    });
    expect(store.serial()).toBe("A1");
    const before = store.current();
    expect(store.reload()).toEqual({ kind: "unchanged" });
    expect(store.current()).toBe(before); // the same object: one TLS context per certificate
    copyFileSync(b.cert, files.cert);
    copyFileSync(b.key, files.key);
    expect(store.reload()).toEqual({ kind: "reloaded", serial: "B2" });
    copyFileSync(a.key, files.key);
    expect(store.reload()).toEqual({ kind: "refused", why: "the key is not the certificate's" });
    expect(store.serial()).toBe("B2");
  });
});
