// ACME against Debian's pebble: two nodes on one PostgreSQL get one certificate for the host
// name and the MTA-STS policy host, answer HTTP-01 from the database, serve it on 25 (STARTTLS),
// 587 and 465 as openssl sees it, and a renewal that falls due is served without a restart.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { havePebble, type Pebble, startPebble } from "../helpers/pebble.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { freePort } from "../helpers/serve.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";

const HOST = "mail.acme.test";
const NODE2 = "127.0.0.49";

/** openssl's view of the certificate served on `port`: serial, issuer, and whether it verifies against `roots`. */
async function served(port: number, roots: string, starttls: boolean, host = "127.0.0.1") {
  const proc = Bun.spawn(
    [
      "openssl",
      "s_client",
      "-connect",
      `${host}:${port}`,
      "-servername",
      HOST,
      "-verify_hostname",
      HOST,
      "-CAfile",
      roots,
      ...(starttls ? ["-starttls", "smtp"] : []),
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  clearTimeout(timer);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0] ?? "";
  const x509 = Bun.spawn(["openssl", "x509", "-noout", "-serial", "-issuer"], {
    stdin: new TextEncoder().encode(pem),
    stdout: "pipe",
  });
  const fields = await new Response(x509.stdout).text();
  return {
    verified: /Verify return code: 0 \(ok\)/.test(out),
    serial: /serial=([0-9A-F]+)/i.exec(fields)?.[1]?.toUpperCase() ?? "",
    issuer: /issuer=(.*)/.exec(fields)?.[1] ?? "",
  };
}

describe.skipIf(!havePostgres || !havePebble)("ACME certificates (pebble)", () => {
  let dns: DnsTestServer;
  let pebble: Pebble;
  let sql: postgres.Sql;
  let env: Record<string, string>;
  const nodes: RunningServer[] = [];
  const dir = tempDir();
  const roots = join(dir, "pebble-roots.pem");

  beforeAll(async () => {
    dns = await startDnsServer({
      [HOST]: { A: ["127.0.0.1"] },
      "mta-sts.acme.test": { A: ["127.0.0.1"] },
    });
    const httpPort = await freePort();
    pebble = await startPebble({ httpPort, dnsSpec: dns.spec });
    const apiCa = join(dir, "pebble-api-ca.pem");
    writeFileSync(apiCa, pebble.apiCaPem);
    const url = await freshDatabaseUrl();
    sql = postgres(url, { max: 2, onnotice: () => {} });
    expect((await runCli(["domain", "add", "acme.test"], cliEnv({ DATABASE_URL: url }))).code).toBe(0);
    env = {
      DATABASE_URL: url,
      POSTERN_HOSTNAME: HOST,
      POSTERN_ACME_DIRECTORY: pebble.directoryUrl,
      POSTERN_ACME_CA_FILE: apiCa,
      POSTERN_ACME_EMAIL: "ops@acme.test",
      POSTERN_ACME_HTTP_PORT: String(httpPort),
    };
    nodes.push(await startTestServer(env));
  }, 30_000);
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await sql?.end();
    await pebble?.stop();
    await dns?.close();
  });

  test("the certificate is obtained and served on 25 (STARTTLS), 587 (STARTTLS) and 465, with pebble's chain", async () => {
    const [cert] = await waitFor("the certificate in the database", async () => {
      const rows = await sql`select serial, names from certificates where name = 'server'`;
      return rows.length ? rows : undefined;
    });
    expect(cert!.names).toEqual([HOST, "mta-sts.acme.test"]);
    writeFileSync(roots, await pebble.issuingRoots());
    const serial = String(cert!.serial).toUpperCase();
    const ports = nodes[0]!.smtpPorts;
    for (const [port, starttls] of [
      [ports.smtp, true],
      [ports.submission, true],
      [ports.submissions, false],
    ] as const) {
      const seen = await waitFor(`pebble's certificate on ${port}`, async () => {
        const s = await served(port, roots, starttls);
        return s.serial === serial ? s : undefined;
      });
      expect(seen.verified).toBe(true);
      expect(seen.issuer).toMatch(/Pebble/);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/metrics`)).text();
    expect(Number(/^postern_tls_certificate_days_left (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThan(30);
  }, 30_000);

  test("a second node serves the stored certificate without ordering one", async () => {
    const [before] = await sql`select serial, updated_at from certificates`;
    // another address: two nodes on one machine cannot share the HTTP-01 port
    nodes.push(await startTestServer({ ...env, POSTERN_LISTEN: NODE2 }));
    const s = await waitFor("node 2 serving it", async () => {
      const seen = await served(nodes[1]!.smtpPorts.submissions, roots, false, NODE2);
      return seen.serial === String(before!.serial).toUpperCase() ? seen : undefined;
    });
    expect(s.verified).toBe(true);
    const [after] = await sql`select serial, updated_at from certificates`;
    expect(after).toEqual(before!);
  });

  test("a renewal that falls due (here: made due, then SIGHUP) is served by every node without a restart", async () => {
    const [old] = await sql`select serial from certificates`;
    await sql`update certificates set not_before = now() - interval '90 days', not_after = now() + interval '1 day'`;
    process.kill(process.pid, "SIGHUP");
    const [renewed] = await waitFor("a new certificate", async () => {
      const rows = await sql`select serial from certificates where serial <> ${old!.serial}`;
      return rows.length ? rows : undefined;
    });
    const serial = String(renewed!.serial).toUpperCase();
    for (const [node, host] of [
      [nodes[0]!, "127.0.0.1"],
      [nodes[1]!, NODE2],
    ] as const)
      await waitFor("the new serial served", async () => {
        const s = await served(node.smtpPorts.submissions, roots, false, host);
        return s.serial === serial && s.verified ? s : undefined;
      });
    const ordering = await sql`select ordering_by from acme_accounts`;
    expect([...ordering]).toEqual([{ ordering_by: null }]); // the lease was given back
  }, 30_000);
});
