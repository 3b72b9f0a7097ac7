// MTA-STS hosting for our own domains: `domain add --mta-sts` prints the records, the HTTPS
// listener serves the policy on port 443 (of a loopback address of its own) with the operator's
// certificate, reloaded without a restart, and `domain check` fetches it as a sender would.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { makeTestCa } from "../helpers/test-ca.ts";

const IP = "127.0.0.47";
const MAIL_HOST = "mx.hosted.test";
const isRoot = process.getuid?.() === 0;

/** GET over HTTPS from IP:port with `name` as SNI and Host, trusting `ca`. */
function get(port: number, name: string, ca: string, path = "/.well-known/mta-sts.txt") {
  return new Promise<{ status: number; type: string; body: string; serial: string }>((resolve, reject) => {
    const req = https.request(
      { host: IP, port, servername: name, headers: { host: name }, path, ca: [ca], agent: false },
      (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => {
          const cert = (
            res.socket as unknown as { getPeerCertificate(): { serialNumber: string } }
          ).getPeerCertificate();
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers["content-type"]),
            body,
            serial: cert.serialNumber,
          });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe.skipIf(!havePostgres || !isRoot)("MTA-STS hosting", () => {
  const ca = makeTestCa();
  const dir = tempDir();
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  const names = [MAIL_HOST, "mta-sts.hosted.test", "mta-sts.testing.test", "mta-sts.none.test"];
  let env: Record<string, string>;
  let dns: DnsTestServer;
  let server: RunningServer | undefined;
  let txtId = "";
  const install = () => {
    const pair = ca.issue(names);
    writeFileSync(certFile, pair.cert);
    writeFileSync(keyFile, pair.key);
    return new X509Certificate(pair.cert).serialNumber;
  };

  beforeAll(async () => {
    const url = await freshDatabaseUrl();
    dns = await startDnsServer({});
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, ca.pem);
    env = cliEnv({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: MAIL_HOST,
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_EXTRA_CA_FILE: caFile,
      POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
      POSTERN_LOG_LEVEL: "error",
    });
    install();
  });
  afterAll(async () => {
    await server?.stop();
    await dns?.close();
  });

  test("domain add --mta-sts prints the policy host, the _mta-sts id and the TLS-RPT record", async () => {
    const add = await runCli(["domain", "add", "hosted.test", "--mta-sts", "enforce"], env);
    expect(add.code).toBe(0);
    expect(add.stdout).toContain(`mta-sts.hosted.test.\t3600\tIN\tCNAME\t${MAIL_HOST}.`);
    expect(add.stdout).toContain(
      `_smtp._tls.hosted.test.\t3600\tIN\tTXT\t"v=TLSRPTv1; rua=mailto:tlsrpt@hosted.test"`,
    );
    txtId =
      /_mta-sts\.hosted\.test\.\t3600\tIN\tTXT\t"v=STSv1; id=([A-Za-z0-9]{1,32})"/.exec(add.stdout)?.[1] ??
      "";
    expect(txtId).not.toBe("");
    expect((await runCli(["domain", "dns", "hosted.test"], env)).stdout).toContain(`v=STSv1; id=${txtId}`);

    const testing = await runCli(["domain", "add", "testing.test"], env); // the default: testing
    expect(testing.stdout).toMatch(/_mta-sts\.testing\.test\.\t3600\tIN\tTXT\t"v=STSv1; id=(?!${txtId}")/);
    const none = await runCli(["domain", "add", "none.test", "--mta-sts", "none"], env);
    expect(none.code).toBe(0);
    expect(none.stdout).not.toContain("mta-sts");
    expect(none.stdout).not.toContain("_smtp._tls");
    const bad = await runCli(["domain", "add", "bad.test", "--mta-sts", "strict"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--mta-sts "strict": expected one of testing, enforce, none');
  });

  test("the policy is served over HTTPS on port 443 for our domains with one, and matches domain dns", async () => {
    server = await startTestServer({
      ...env,
      POSTERN_LISTEN: IP,
      POSTERN_HTTPS_PORT: "443",
      POSTERN_TLS_CERT: certFile,
      POSTERN_TLS_KEY: keyFile,
    });
    expect(server.httpsPort).toBe(443);
    const r = await get(443, "mta-sts.hosted.test", ca.pem);
    expect(r.status).toBe(200);
    expect(r.type).toStartWith("text/plain");
    expect(r.body).toBe(`version: STSv1\r\nmode: enforce\r\nmx: ${MAIL_HOST}\r\nmax_age: 604800\r\n`);
    expect(createHash("sha256").update(r.body).digest("hex").slice(0, 20)).toBe(txtId);
    expect((await get(443, "mta-sts.testing.test", ca.pem)).body).toContain("mode: testing\r\n");
    expect((await get(443, "mta-sts.none.test", ca.pem)).status).toBe(404);
    expect((await get(443, "mta-sts.hosted.test", ca.pem, "/")).status).toBe(404);
  });

  test("domain check fetches the policy as a sender would and checks the TXT records", async () => {
    const dnsOut = (await runCli(["domain", "dns", "hosted.test"], env)).stdout;
    Object.assign(dns.zone, {
      "mta-sts.hosted.test": { A: [IP] },
      "_mta-sts.hosted.test": { TXT: [`v=STSv1; id=${txtId}`] },
      "_smtp._tls.hosted.test": { TXT: ["v=TLSRPTv1; rua=mailto:tlsrpt@hosted.test"] },
    });
    const check = await runCli(["domain", "check", "hosted.test"], env);
    expect(check.stdout).toMatch(/^ok\s+CNAME mta-sts\.hosted\.test/m);
    expect(check.stdout).toMatch(/^ok\s+TXT\s+_mta-sts\.hosted\.test/m);
    expect(check.stdout).toMatch(/^ok\s+TXT\s+_smtp\._tls\.hosted\.test/m);
    expect(check.code).toBe(1); // MX, SPF, DKIM and DMARC are not published in this zone
    expect(dnsOut).toContain("_mta-sts.hosted.test");

    dns.zone["_mta-sts.hosted.test"] = { TXT: ["v=STSv1; id=stale1"] };
    const stale = await runCli(["domain", "check", "hosted.test"], env);
    expect(stale.stdout).toMatch(/^differs\s+TXT\s+_mta-sts\.hosted\.test/m);
    expect(stale.stdout).toContain("published: v=STSv1; id=stale1");
  });

  test("new certificate files + SIGHUP: the HTTPS listener serves the new one without a restart", async () => {
    const before = (await get(443, "mta-sts.hosted.test", ca.pem)).serial;
    const serial = install();
    expect(serial).not.toBe(before);
    process.kill(process.pid, "SIGHUP");
    let now = before;
    for (let i = 0; i < 50 && now !== serial; i++) {
      await Bun.sleep(50);
      now = (await get(443, "mta-sts.hosted.test", ca.pem)).serial;
    }
    expect(now).toBe(serial);
  });

  test("the policy host down: domain check says so", async () => {
    await server!.stop();
    server = undefined;
    const check = await runCli(["domain", "check", "hosted.test"], env);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/^error\s+CNAME mta-sts\.hosted\.test/m);
    expect(check.stdout).toMatch(
      /published: https:\/\/mta-sts\.hosted\.test\/\.well-known\/mta-sts\.txt: .*ECONNREFUSED/,
    );
  });
});
