// Inbound SPF, DKIM, DMARC through a real server, a real SMTP client (swaks), a DNS server on
// loopback, messages signed by an independent implementation (dkimpy), and real PostgreSQL.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPrivateKey } from "node:crypto";
import postgres from "postgres";
import { dkimTxtValue, generateDkimKeys } from "../../src/mail/dkim.ts";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { dkimpySign, dkimpyVerify, haveDkimpy } from "../helpers/dkimpy.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { queuedId, swaks } from "../helpers/swaks.ts";

const HOST = "mx.example.test";
const keys = generateDkimKeys();
const edSeed = createPrivateKey(keys.ed25519)
  .export({ format: "der", type: "pkcs8" })
  .subarray(-32)
  .toString("base64");

function message(from: string, subject: string, extraHeaders = ""): string {
  return [
    `From: ${from}`,
    "To: alice@example.test",
    `Subject: ${subject}`,
    "Date: Sun, 29 Nov 2026 08:23:01 +0000",
    `Message-ID: <${subject.replace(/\W/g, "")}@sender.test>`,
    ...(extraHeaders ? [extraHeaders] : []),
    "",
    `Body of ${subject}.`,
    "",
  ].join("\r\n");
}

describe.skipIf(!havePostgres || !haveDkimpy)("inbound authentication", () => {
  let dns: DnsTestServer;
  let server: RunningServer;
  let sql: postgres.Sql;
  let port: number;
  let databaseUrl: string;

  beforeAll(async () => {
    dns = await startDnsServer({
      "sender.test": {
        MX: [{ exchange: "mx.sender.test", priority: 10 }],
        TXT: ["v=spf1 ip4:127.0.0.1 -all"],
      },
      "mx.sender.test": { A: ["127.0.0.1"] },
      "rsa._domainkey.sender.test": { TXT: [dkimTxtValue(keys.rsa)] },
      "ed._domainkey.sender.test": { TXT: [dkimTxtValue(keys.ed25519)] },
      "_dmarc.sender.test": { TXT: ["v=DMARC1; p=reject"] },
      "spoofed.test": { A: ["192.0.2.1"], TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
      "_dmarc.spoofed.test": { TXT: ["v=DMARC1; p=reject"] },
      "quarantined.test": { A: ["192.0.2.1"], TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
      "_dmarc.quarantined.test": { TXT: ["v=DMARC1; p=quarantine"] },
      "soft.test": { A: ["192.0.2.1"], TXT: ["v=spf1 ip4:192.0.2.1 ~all"] },
      "remote.test": { MX: [{ exchange: "mx.remote.test", priority: 10 }] },
      "nullmx.test": { MX: [{ exchange: ".", priority: 0 }] },
    });
    const url = await freshDatabaseUrl();
    databaseUrl = url;
    const env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: HOST });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    const user = await runCli(["user", "add", "u@example.test", "--password-stdin"], env, "pw\n");
    expect(user.code).toBe(0);
    sql = postgres(url, { max: 1, onnotice: () => {} });
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: HOST,
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_DNS_CHECKS: "on",
    });
    port = server.smtpPorts.smtp;
  });
  afterAll(async () => {
    await server?.stop();
    await sql?.end();
    await dns?.close();
  });

  async function stored(transcript: string) {
    const id = queuedId(transcript);
    expect(id).toBeDefined();
    const [row] = await sql`select raw, auth_results from messages where id = ${id!}`;
    return { raw: Buffer.from(row!.raw).toString("latin1"), auth: row!.auth_results };
  }

  test.each([
    ["RSA", { selector: "rsa", privateKeyPem: keys.rsa, algorithm: "rsa-sha256" as const }],
    ["Ed25519", { selector: "ed", privateKeyPem: edSeed, algorithm: "ed25519-sha256" as const }],
  ])("a dkimpy %s signature, SPF and DMARC pass; the headers are on top", async (_name, key) => {
    const text = message("Sender <news@sender.test>", `signed ${key.selector}`);
    const signature = dkimpySign(new TextEncoder().encode(text), { ...key, domain: "sender.test" });
    const t = await swaks({
      port,
      from: "news@sender.test",
      to: "alice@example.test",
      data: signature + text,
    });
    expect(t).toContain("250 2.0.0 Ok: queued as");
    const { raw, auth } = await stored(t);
    expect(auth.spf).toBe("pass");
    expect(auth.dkim).toEqual([{ domain: "sender.test", selector: key.selector, result: "pass" }]);
    expect(auth.dmarc).toMatchObject({ result: "pass", domain: "sender.test" });
    expect(raw).toStartWith("Received-SPF: pass");
    expect(raw).toMatch(/\r\nAuthentication-Results: mx\.example\.test;\r\n/);
    expect(raw).toContain("dkim=pass");
    expect(raw.indexOf("Authentication-Results:")).toBeLessThan(raw.indexOf("Received: from"));
  });

  test("a spoof of a p=reject domain is refused at end of data with 550 5.7.1 naming the domain", async () => {
    const t = await swaks({
      port,
      from: "ceo@spoofed.test",
      to: "alice@example.test",
      data: message("CEO <ceo@spoofed.test>", "spoof"),
    });
    expect(t).toMatch(/550 5\.7\.1 .*spoofed\.test/);
    expect(t).not.toContain("queued as");
  });

  test("p=quarantine is accepted and marked", async () => {
    const t = await swaks({
      port,
      from: "x@quarantined.test",
      to: "alice@example.test",
      data: message("x@quarantined.test", "quarantine"),
    });
    const { auth } = await stored(t);
    expect(auth).toMatchObject({
      spf: "fail",
      dmarc: { result: "fail", policy: "quarantine" },
      quarantine: true,
    });
  });

  test("SPF softfail is recorded, and an Authentication-Results claiming to be ours is removed", async () => {
    const forged = "Authentication-Results: mx.example.test; spf=pass; dkim=pass header.d=soft.test";
    const other = "Authentication-Results: other.example; spf=pass";
    const t = await swaks({
      port,
      from: "a@soft.test",
      to: "alice@example.test",
      data: message("a@soft.test", "softfail", `${forged}\r\n${other}`),
    });
    const { raw, auth } = await stored(t);
    expect(auth.spf).toBe("softfail");
    expect(raw).not.toContain(forged);
    expect(raw).toContain(other);
    expect(raw.match(/Authentication-Results: mx\.example\.test/g)).toHaveLength(1);
  });

  describe("forged Authentication-Results claiming our authserv-id", () => {
    const forgeries = [
      'Authentication-Results: "mx.example.test"; dkim=pass header.d=bank.test; dmarc=pass',
      "Authentication-Results: (a(b)c) mx.example.test; dkim=pass header.d=bank.test",
      "Authentication-Results: (x) MX.Example.TEST.; dmarc=pass header.from=bank.test",
    ];
    const legit = "Authentication-Results: relay.other.test; spf=pass smtp.mailfrom=bank.test";
    const send = (to: number, subject: string) =>
      swaks({
        port: to,
        from: "a@sender.test",
        to: "alice@example.test",
        data: message("a@sender.test", subject, [...forgeries, legit].join("\r\n")),
      });

    test("are gone from the stored message; another authserv-id's results stay", async () => {
      const { raw } = await stored(await send(port, "forged ar"));
      for (const f of forgeries) expect(raw).not.toContain(f);
      expect(raw).toContain(legit);
      expect(raw.match(/Authentication-Results: mx\.example\.test;/gi)).toHaveLength(1);
    });

    test("are gone with POSTERN_DNS_CHECKS=off too", async () => {
      const unchecked = await startTestServer({
        DATABASE_URL: databaseUrl,
        POSTERN_HOSTNAME: HOST,
        POSTERN_DNS_CHECKS: "off",
      });
      try {
        const { raw, auth } = await stored(await send(unchecked.smtpPorts.smtp, "forged ar unchecked"));
        expect(auth).toBeNull();
        for (const f of forgeries) expect(raw).not.toContain(f);
        expect(raw).toContain(legit);
        expect(raw).not.toMatch(/Authentication-Results: \S*mx\.example\.test/i);
      } finally {
        await unchecked.stop();
      }
    });
  });

  test("MAIL FROM a domain that does not exist: 550 5.1.8; a DNS failure: 451 4.1.8", async () => {
    const missing = await swaks({ port, from: "a@nowhere.test", to: "alice@example.test" });
    expect(missing).toContain("550 5.1.8");
    dns.behaviour.servfail = true;
    try {
      const failing = await swaks({ port, from: "a@broken.test", to: "alice@example.test" });
      expect(failing).toContain("451 4.1.8");
    } finally {
      dns.behaviour.servfail = false;
    }
  });

  test("the same unsigned sender again reuses its verdict; /metrics counts each way", async () => {
    const checks = async () => {
      const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
      const read = (how: string) =>
        Number(new RegExp(`^postern_auth_checks_total\\{how="${how}"\\} (\\d+)$`, "m").exec(text)?.[1]);
      return { verified: read("verified"), checked: read("checked"), reused: read("reused") };
    };
    const before = await checks();
    expect(before.verified).toBeGreaterThanOrEqual(2); // the dkimpy-signed messages above
    const send = () =>
      swaks({
        port,
        from: "bulk@sender.test",
        to: "alice@example.test",
        data: message("bulk@sender.test", "bulk"),
      });
    const first = await stored(await send());
    const second = await stored(await send());
    expect(second.auth).toEqual(first.auth);
    expect(first.auth.spf).toBe("pass");
    const after = await checks();
    expect(after.checked).toBe(before.checked + 1);
    expect(after.reused).toBe(before.reused + 1);
    expect(after.verified).toBe(before.verified);
  });

  describe("outbound, from an authenticated user", () => {
    const submit = (to: string, data?: string) =>
      swaks({
        port: server.smtpPorts.submission,
        from: "u@example.test",
        to,
        data,
        extra: ["-tls", "--auth", "PLAIN", "--auth-user", "u@example.test", "--auth-password", "pw"],
      });

    test("is DKIM-signed with both keys, and dkimpy verifies both", async () => {
      const t = await submit(
        "bob@remote.test",
        message("U <u@example.test>", "outbound").replace("To: alice@example.test", "To: bob@remote.test"),
      );
      expect(t).toContain("250 2.0.0 Ok: queued as");
      const { raw, auth } = await stored(t);
      expect(auth).toBeNull(); // submissions skip the inbound checks
      expect(raw).toStartWith("DKIM-Signature: v=1; a=rsa-sha256;");
      expect(raw).toContain("DKIM-Signature: v=1; a=ed25519-sha256;");
      const [domain] =
        await sql`select dkim_rsa_key, dkim_ed25519_key from domains where name = 'example.test'`;
      const records = {
        "postern-rsa._domainkey.example.test": dkimTxtValue(domain!.dkim_rsa_key),
        "postern-ed25519._domainkey.example.test": dkimTxtValue(domain!.dkim_ed25519_key),
      };
      expect(dkimpyVerify(new TextEncoder().encode(raw), records)).toEqual([true, true]);
    });

    test("a recipient domain with no mail server or a null MX is refused at RCPT", async () => {
      expect(await submit("x@nowhere.test")).toContain("550 5.1.2");
      expect(await submit("x@nullmx.test")).toContain("550 5.1.2");
    });
  });
});
