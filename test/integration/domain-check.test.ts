import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { domainRecords } from "../../src/domains/records.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer, type Zone } from "../helpers/dns.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";

describe.skipIf(!havePostgres)("postern domain check", () => {
  let dns: DnsTestServer;
  let env: Record<string, string>;
  let zone: Zone;

  beforeAll(async () => {
    const url = await freshDatabaseUrl();
    dns = await startDnsServer({});
    env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test", POSTERN_DNS_SERVERS: dns.spec });
    // MTA-STS hosting is checked with a policy host of its own (mta-sts-hosting.test.ts)
    expect((await runCli(["domain", "add", "example.test", "--mta-sts", "none"], env)).code).toBe(0);
    const sql = postgres(url, { max: 1 });
    const [row] = await sql`select * from domains where name = 'example.test'`;
    await sql.end();
    const records = domainRecords(
      {
        name: "example.test",
        dkimSelector: row!.dkim_selector,
        dkimRsaKey: row!.dkim_rsa_key,
        dkimEd25519Key: row!.dkim_ed25519_key,
        mtaStsMode: "none",
      },
      "mx.example.test",
    );
    zone = {};
    for (const r of records) {
      const entry = zone[r.name] ?? {};
      zone[r.name] = entry;
      if (r.type === "MX") entry.MX = [{ exchange: "mx.example.test", priority: 10 }];
      else entry.TXT = [...(entry.TXT ?? []), r.value]; // split into 255-octet strings, as a zone would
    }
    zone["example.test"]!.TXT!.push("google-site-verification=unrelated");
    Object.assign(dns.zone, zone);
  });
  afterAll(async () => {
    await dns?.close();
  });

  test("every record published as printed: all ok, exit 0", async () => {
    const r = await runCli(["domain", "check", "example.test"], env);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(/\s+/)[0]),
    ).toEqual(["ok", "ok", "ok", "ok", "ok"]);
  });

  test("a wrong DKIM key and a missing DMARC record are named; exit 1", async () => {
    delete dns.zone["_dmarc.example.test"];
    dns.zone["postern-ed25519._domainkey.example.test"] = {
      TXT: ["v=DKIM1; k=ed25519; p=AAAAC3NzaC1lZDI1NTE5AAAA"],
    };
    dns.zone["example.test"]!.TXT = ["v=spf1 a -all"];
    const r = await runCli(["domain", "check", "example.test"], { ...env, POSTERN_LOG_LEVEL: "error" });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ok\s+MX\s+example\.test/m);
    expect(r.stdout).toMatch(/^differs\s+TXT\s+postern-ed25519\._domainkey\.example\.test/m);
    expect(r.stdout).toContain("published: v=DKIM1; k=ed25519; p=AAAAC3NzaC1lZDI1NTE5AAAA");
    expect(r.stdout).toMatch(/^missing\s+TXT\s+_dmarc\.example\.test/m);
    expect(r.stdout).toMatch(/^differs\s+TXT\s+example\.test \(SPF/m);
    expect(r.stdout).toContain("not required to match");
    expect(r.stderr.trim()).toBe("postern: domain example.test: DNS records missing or wrong (see above)");
  });
});
