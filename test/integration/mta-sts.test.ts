// MTA-STS outbound (RFC 8461) against receivers that are not ours: nodemailer's smtp-server as the
// MX hosts (one per loopback address, on one port), policies served over HTTPS on port 443 of
// another loopback address with a certificate from a test CA that POSTERN_EXTRA_CA_FILE trusts,
// and a local DNS server publishing the MX, `_mta-sts` TXT and policy host records.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import PostalMime from "postal-mime";
import postgres from "postgres";
import type { RunningServer } from "../../src/serve.ts";
import type { TlsReport } from "../../src/tlsrpt/report.ts";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer, type Zone } from "../helpers/dns.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { freePort } from "../helpers/serve.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";
import { makeTestCa } from "../helpers/test-ca.ts";

const TOKEN = "admin-token-for-the-mta-sts-tests";
const POLICY_HOST_IP = "127.0.0.40";
/** Where plain.test's TLS reports are POSTed (its _smtp._tls record names https://IP/tlsrpt). */
const REPORT_HOST_IP = "127.0.0.48";
const REPORT_PERIOD_SECONDS = 2;

const policy = (mode: string, ...mx: string[]) =>
  `version: STSv1\nmode: ${mode}\n${mx.map((m) => `mx: ${m}\n`).join("")}max_age: 86400\n`;

/** A domain's records: MX hosts, its `_mta-sts` TXT (short TTL, so tests may change it) and policy host. */
function stsDomain(domain: string, mx: string[], id: string | undefined): Zone {
  return {
    [domain]: { MX: mx.map((exchange, i) => ({ exchange, priority: 10 * (i + 1) })) },
    ...(id ? { [`_mta-sts.${domain}`]: { ttl: 1, TXT: [`v=STSv1; id=${id}`] } } : {}),
    [`mta-sts.${domain}`]: { A: [POLICY_HOST_IP] },
  };
}

describe.skipIf(!havePostgres)("MTA-STS outbound", () => {
  const ca = makeTestCa();
  const policies = new Map<string, string>([
    ["good.test", policy("enforce", "mx.good.test")],
    ["plain.test", policy("enforce", "mx.plain.test")],
    ["wrongname.test", policy("enforce", "mx.wrongname.test")],
    ["expired.test", policy("enforce", "mx.expired.test")],
    ["outside.test", policy("enforce", "*.good.test")],
    ["testing.test", policy("testing", "mx.plain.test")],
  ]);
  const fetched: string[] = [];
  const posted: { type: string; body: Uint8Array }[] = [];
  let https: ReturnType<typeof Bun.serve>;
  let reportsHttps: ReturnType<typeof Bun.serve>;
  let dns: DnsTestServer;
  const peers: Record<string, SmtpPeer> = {};
  let url: string;
  let sql: postgres.Sql;
  const nodes: RunningServer[] = [];
  let serverEnv: Record<string, string>;

  const send = (to: string, node = 0) =>
    fetch(`http://127.0.0.1:${nodes[node]!.httpPort}/api/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ from: "app@example.test", to: [to], subject: `to ${to}`, text: "hello" }),
    }).then(async (r) => {
      expect(r.status).toBe(202);
      return ((await r.json()) as { id: string }).id;
    });
  const settled = (rcpt: string) =>
    waitFor(`the delivery to ${rcpt} settled`, async () => {
      const [d] = await sql`select status, last_reply, attempts from deliveries where rcpt = ${rcpt}`;
      return d && d.status !== "queued" && d.attempts > 0 ? d : undefined;
    });
  const metric = async (labels: string) => {
    const text = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`postern_outbound_tls_sessions_total{${labels}}`));
    return line ? Number(line.split(" ").pop()) : 0;
  };
  const received = (peer: string, rcpt: string) =>
    peers[peer]!.received.filter((m) => m.recipients.includes(rcpt));

  beforeAll(async () => {
    https = Bun.serve({
      hostname: POLICY_HOST_IP,
      port: 443,
      tls: ca.issue([...policies.keys()].map((d) => `mta-sts.${d}`)),
      fetch(req) {
        const domain = (req.headers.get("host") ?? "").replace(/^mta-sts\./, "");
        fetched.push(domain);
        const text = policies.get(domain);
        if (new URL(req.url).pathname !== "/.well-known/mta-sts.txt" || !text)
          return new Response("no", { status: 404 });
        return new Response(text, { headers: { "content-type": "text/plain" } });
      },
    });
    reportsHttps = Bun.serve({
      hostname: REPORT_HOST_IP,
      port: 443,
      tls: ca.issue([REPORT_HOST_IP]),
      async fetch(req) {
        posted.push({
          type: req.headers.get("content-type") ?? "",
          body: new Uint8Array(await req.arrayBuffer()),
        });
        return new Response("thanks");
      },
    });
    const port = await freePort();
    const mx = async (name: string, ip: string, opts: Parameters<typeof SmtpPeer.start>[0]) => {
      peers[name] = await SmtpPeer.start({ listen: { host: ip, port }, ...opts });
    };
    await mx("good", "127.0.0.41", { starttls: true, tls: ca.issue(["mx.good.test", "mx2.good.test"]) });
    await mx("plain", "127.0.0.42", { starttls: false });
    await mx("wrongname", "127.0.0.43", { starttls: true, tls: ca.issue(["somewhere.else.test"]) });
    await mx("expired", "127.0.0.44", {
      starttls: true,
      tls: ca.issue(["mx.expired.test"], { expired: true }),
    });
    await mx("outside", "127.0.0.45", { starttls: true, tls: ca.issue(["mx.outside.test"]) });
    dns = await startDnsServer({
      ...stsDomain("good.test", ["mx.good.test"], "1"),
      ...stsDomain("plain.test", ["mx.plain.test"], "1"),
      ...stsDomain("wrongname.test", ["mx.wrongname.test"], "1"),
      ...stsDomain("expired.test", ["mx.expired.test"], "1"),
      // mx2: a host no earlier test has an idle connection to, so preference alone decides
      ...stsDomain("outside.test", ["mx.outside.test", "mx2.good.test"], "1"),
      ...stsDomain("testing.test", ["mx.plain.test"], "1"),
      ...stsDomain("nopolicy.test", ["mx.plain.test"], undefined),
      "mx.good.test": { A: ["127.0.0.41"] },
      "mx2.good.test": { A: ["127.0.0.41"] },
      "mx.plain.test": { A: ["127.0.0.42"] },
      "mx.wrongname.test": { A: ["127.0.0.43"] },
      "mx.expired.test": { A: ["127.0.0.44"] },
      "mx.outside.test": { A: ["127.0.0.45"] },
      "_smtp._tls.good.test": { TXT: ["v=TLSRPTv1; rua=mailto:tls@reports.test"] },
      "_smtp._tls.plain.test": { TXT: [`v=TLSRPTv1; rua=https://${REPORT_HOST_IP}/tlsrpt`] },
      "reports.test": { MX: [{ exchange: "mx.reports.test", priority: 10 }] },
      "mx.reports.test": { A: ["127.0.0.41"] },
    });
    const caFile = join(tempDir(), "extra-ca.pem");
    writeFileSync(caFile, ca.pem);
    url = await freshDatabaseUrl();
    expect((await runCli(["domain", "add", "example.test"], cliEnv({ DATABASE_URL: url }))).code).toBe(0);
    sql = postgres(url, { max: 2, onnotice: () => {} });
    serverEnv = {
      DATABASE_URL: url,
      POSTERN_ADMIN_TOKEN: TOKEN,
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_OUTBOUND_PORT: String(port),
      POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
      POSTERN_EXTRA_CA_FILE: caFile,
      POSTERN_RETRY_BASE_SECONDS: "600",
      POSTERN_RETRY_MAX_SECONDS: "600",
      POSTERN_TLSRPT_PERIOD_SECONDS: String(REPORT_PERIOD_SECONDS),
    };
    nodes.push(await startTestServer(serverEnv));
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await sql?.end();
    await Promise.all(Object.values(peers).map((p) => p.stop()));
    https?.stop(true);
    reportsHttps?.stop(true);
    await dns?.close();
  });

  test("enforce, STARTTLS with a certificate valid for the MX name: delivered over verified TLS", async () => {
    await send("a@good.test");
    expect((await settled("a@good.test")).status).toBe("delivered");
    const [m] = received("good", "a@good.test");
    expect(m?.tls).toBe(true);
    expect(await metric('policy="enforce",result="success"')).toBeGreaterThanOrEqual(1);
  });

  test("enforce, an MX without STARTTLS: deferred, never sent in clear", async () => {
    await send("b@plain.test");
    const d = await settled("b@plain.test");
    expect(d.status).toBe("deferred");
    expect(d.last_reply).toMatch(/^451 4\.7\.4 .*offers no STARTTLS.*MTA-STS/);
    expect(received("plain", "b@plain.test")).toEqual([]);
    expect(await metric('policy="enforce",result="starttls-not-supported"')).toBeGreaterThanOrEqual(1);
  });

  test("enforce, a certificate for another name, or expired: deferred with the reason, never sent", async () => {
    await send("c@wrongname.test");
    await send("d@expired.test");
    const wrong = await settled("c@wrongname.test");
    expect(wrong.status).toBe("deferred");
    expect(wrong.last_reply).toMatch(/^451 4\.7\.5 .*ERR_TLS_CERT_ALTNAME_INVALID.*MTA-STS/);
    const expired = await settled("d@expired.test");
    expect(expired.status).toBe("deferred");
    expect(expired.last_reply).toMatch(/CERT_HAS_EXPIRED/);
    expect(received("wrongname", "c@wrongname.test")).toEqual([]);
    expect(received("expired", "d@expired.test")).toEqual([]);
    expect(await metric('policy="enforce",result="certificate-host-mismatch"')).toBeGreaterThanOrEqual(1);
    expect(await metric('policy="enforce",result="certificate-expired"')).toBeGreaterThanOrEqual(1);
  });

  test("enforce: an MX host outside the policy is never contacted, even at a better preference", async () => {
    const before = peers.outside!.connections.length;
    await send("e@outside.test");
    expect((await settled("e@outside.test")).status).toBe("delivered");
    expect(received("good", "e@outside.test")).toHaveLength(1);
    expect(peers.outside!.connections.length).toBe(before);
  });

  test("testing: delivered as without a policy (here in clear), the failure counted", async () => {
    const before = await metric('policy="testing",result="starttls-not-supported"');
    await send("f@testing.test");
    await send("g@nopolicy.test");
    expect((await settled("f@testing.test")).status).toBe("delivered");
    expect((await settled("g@nopolicy.test")).status).toBe("delivered");
    expect(received("plain", "f@testing.test")[0]?.tls).toBe(false);
    expect(await metric('policy="testing",result="starttls-not-supported"')).toBe(before + 1);
    expect(await metric('policy="none",result="starttls-not-supported"')).toBeGreaterThanOrEqual(1);
  });

  test("the policy host down and the TXT id changed: the cached policy holds, on a fresh node too", async () => {
    https.stop(true);
    dns.zone["_mta-sts.plain.test"] = { ttl: 1, TXT: ["v=STSv1; id=2"] };
    nodes.push(await startTestServer(serverEnv)); // knows nothing but the database
    await nodes[0]!.stop();
    nodes.shift();
    const id = await send("h@plain.test");
    const d = await settled("h@plain.test");
    expect(d.status).toBe("deferred");
    expect(d.last_reply).toMatch(/offers no STARTTLS.*MTA-STS/);
    expect(received("plain", "h@plain.test")).toEqual([]);
    expect(await metric('policy="enforce",result="sts-policy-fetch-error"')).toBe(1);
    const [row] = await sql`select policy_id, mode, mx from mta_sts_policies where domain = 'plain.test'`;
    expect(row).toEqual({ policy_id: "1", mode: "enforce", mx: ["mx.plain.test"] });
    expect(id).toBeString();
  });

  test("TLS-RPT: each period's sessions are reported once, by mail (DKIM-signed) and over HTTPS", async () => {
    type Report = TlsReport;
    const summed = (reports: Report[]) => {
      const counts: Record<string, number> = {};
      for (const r of reports)
        for (const p of r.policies) {
          counts.success = (counts.success ?? 0) + p.summary["total-successful-session-count"];
          for (const f of p["failure-details"] ?? [])
            counts[f["result-type"]] = (counts[f["result-type"]] ?? 0) + f["failed-session-count"];
        }
      return counts;
    };
    // plain.test: two attempts without STARTTLS under enforce, one failed policy refresh.
    const plain = await waitFor(
      "plain.test's reports over HTTPS",
      async () => {
        const reports = posted.map((p) => JSON.parse(gunzipSync(p.body).toString()) as Report);
        const counts = summed(reports);
        return counts["starttls-not-supported"] === 2 && counts["sts-policy-fetch-error"] === 1
          ? reports
          : undefined;
      },
      15_000,
    );
    expect(posted.every((p) => p.type === "application/tlsrpt+gzip")).toBe(true);
    expect(plain.every((r) => r.policies.every((p) => p.policy["policy-domain"] === "plain.test"))).toBe(
      true,
    );
    expect(summed(plain).success ?? 0).toBe(0);
    expect(new Set(plain.map((r) => r["report-id"])).size).toBe(plain.length); // one per period

    // good.test: one verified session, reported by mail to its rua through our own queue.
    const mails = await waitFor("good.test's report by mail", async () => {
      const got = received("good", "tls@reports.test");
      return got.length > 0 ? got : undefined;
    });
    const parsed = await PostalMime.parse(mails[0]!.data, { attachmentEncoding: "arraybuffer" });
    expect(parsed.headers.find((h) => h.key === "content-type")?.value).toMatch(
      /multipart\/report; report-type="?tlsrpt/,
    );
    expect(parsed.headers.find((h) => h.key === "dkim-signature")?.value).toMatch(/d=example\.test/);
    const gz = parsed.attachments.find((a) => a.mimeType === "application/tlsrpt+gzip")!;
    const report = JSON.parse(gunzipSync(new Uint8Array(gz.content as ArrayBuffer)).toString()) as Report;
    expect(report.policies[0]!.policy).toMatchObject({ "policy-type": "sts", "policy-domain": "good.test" });
    expect(summed([report])).toEqual({ success: 1 });
    const sent = await sql`select count(*)::int as n from tls_reports_sent where domain = 'good.test'`;
    expect(sent[0]!.n).toBe(1);
  }, 30_000);

  test("a TLS report mailed to tlsrpt@ one of our domains is kept and listed by the API", async () => {
    const script = [
      "import smtplib, sys",
      "s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)",
      "s.sendmail('noreply-smtp-tls-reporting@google.test', ['tlsrpt@example.test'], open(sys.argv[2], 'rb').read())",
      "s.quit()",
    ].join("\n");
    const eml = join(import.meta.dir, "../data/tls-reports/google-style.eml");
    // not spawnSync: the server answering it runs in this process
    const py = Bun.spawn(["/usr/bin/python3", "-c", script, String(nodes[0]!.smtpPorts.smtp), eml], {
      stderr: "pipe",
    });
    expect(await py.exited).toBe(0);
    expect(await new Response(py.stderr).text()).toBe("");
    const list = await waitFor("the stored report", async () => {
      const r = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/api/tls-reports?domain=example.test`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const body = (await r.json()) as { organization: string; reportId: string; report: TlsReport }[];
      return body.length > 0 ? body : undefined;
    });
    expect(list[0]).toMatchObject({
      organization: "Google Inc.",
      reportId: "2026-11-30T00:00:00Z_example.test",
    });
    expect(list[0]!.report.policies[0]!.summary["total-failure-session-count"]).toBe(2);
  });
});
