import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig, secretRedactor } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";

describe("parseConfig", () => {
  test("defaults follow the contract", () => {
    const c = parseConfig({});
    expect(c.smtpPort).toBe(25);
    expect(c.submissionPort).toBe(587);
    expect(c.submissionsPort).toBe(465);
    expect(c.httpPort).toBe(8025);
    expect(c.maxMessageBytes).toBe(26214400);
    expect(c.maxRecipients).toBe(100);
    expect(c.queueLifetimeSeconds).toBe(432000);
    expect(c.historyDays).toBe(7);
    expect(c.authLockoutFailures).toBe(10);
    expect(c.inboundPerMinute).toBe(120);
    expect(c.dnsblZones).toEqual([]);
    expect(c.dmarcPolicy).toBe("enforce");
    expect(c.databaseUrl).toBeUndefined();
    expect(c.dataDir.endsWith("/data")).toBe(true);
  });

  test("values are read and converted", () => {
    const c = parseConfig({
      DATABASE_URL: "postgres://u@127.0.0.1:5432/db",
      POSTERN_SMTP_PORT: "2525",
      POSTERN_DNS_SERVERS: "127.0.0.1:5353, [::1]:53,10.0.0.1,::1",
      POSTERN_DMARC_POLICY: "monitor",
      POSTERN_LISTEN: "::1",
    });
    expect(c.smtpPort).toBe(2525);
    expect(c.dnsServers).toEqual(["127.0.0.1:5353", "[::1]:53", "10.0.0.1", "::1"]);
    expect(c.dmarcPolicy).toBe("monitor");
    expect(c.listen).toBe("::1");
    expect(parseConfig({ POSTERN_HISTORY_DAYS: "0" }).historyDays).toBe(0);
    expect(parseConfig({ POSTERN_DNSBL_ZONES: " zen.example , Bl.Example. " }).dnsblZones).toEqual([
      "zen.example",
      "bl.example",
    ]);
  });

  test("TLS settings: MTA-STS, TLS reports and ACME", () => {
    const d = parseConfig({});
    expect([d.mtaSts, d.httpsPort, d.tlsReportPeriodSeconds, d.acme]).toEqual([true, 443, 86400, undefined]);
    const c = parseConfig({
      POSTERN_MTA_STS: "off",
      POSTERN_TLSRPT: "off",
      POSTERN_ACME_DIRECTORY: "letsencrypt",
      POSTERN_ACME_EMAIL: "ops@example.test",
    });
    expect([c.mtaSts, c.tlsReportPeriodSeconds]).toEqual([false, undefined]);
    expect(c.acme).toEqual({
      directoryUrl: "https://acme-v02.api.letsencrypt.org/directory",
      email: "ops@example.test",
      caFile: undefined,
      httpPort: 80,
    });
    expect(() => parseConfig({ POSTERN_ACME_DIRECTORY: "http://acme.test/dir" })).toThrow(
      'POSTERN_ACME_DIRECTORY="http://acme.test/dir" is invalid: expected an https:// ACME directory URL or letsencrypt',
    );
  });

  test("an empty variable counts as unset", () => {
    expect(parseConfig({ POSTERN_SMTP_PORT: "" }).smtpPort).toBe(25);
  });

  const bad: [Record<string, string>, string][] = [
    [{ POSTERN_SMTP_PORT: "abc" }, 'POSTERN_SMTP_PORT="abc" is invalid: expected a whole number'],
    [{ POSTERN_SMTP_PORT: "70000" }, 'POSTERN_SMTP_PORT="70000" is invalid: expected a number <= 65535'],
    [{ POSTERN_MAX_RECIPIENTS: "0" }, 'POSTERN_MAX_RECIPIENTS="0" is invalid: expected a number > 0'],
    [{ POSTERN_HISTORY_DAYS: "-1" }, 'POSTERN_HISTORY_DAYS="-1" is invalid: expected a number >= 0'],
    [
      { POSTERN_DNSBL_ZONES: "zen example" },
      'POSTERN_DNSBL_ZONES="zen example" is invalid: expected DNS zone names',
    ],
    [
      { POSTERN_DMARC_POLICY: "strict" },
      'POSTERN_DMARC_POLICY="strict" is invalid: expected one of "enforce", "monitor"',
    ],
    [{ DATABASE_URL: "mysql://x" }, 'DATABASE_URL="mysql://x" is invalid: expected a postgres:// URL'],
    [
      { POSTERN_LISTEN: "everywhere" },
      'POSTERN_LISTEN="everywhere" is invalid: expected an IPv4 or IPv6 address',
    ],
    [{ POSTERN_DNS_SERVERS: "1.1.1.1:x" }, 'POSTERN_DNS_SERVERS="1.1.1.1:x" is invalid: expected ip[:port]'],
    [
      { POSTERN_DNS_SERVERS: "ns.example.com" },
      'POSTERN_DNS_SERVERS="ns.example.com" is invalid: expected ip[:port]',
    ],
    [
      { POSTERN_ADMIN_TOKEN: "short" },
      "POSTERN_ADMIN_TOKEN=*** (5 characters, not shown) is invalid: expected at least 16 characters",
    ],
    [
      { DATABASE_URL: "postgresq://postern:S3cretDbPass@db/postern" },
      'DATABASE_URL="postgresq://***@db/postern" is invalid: expected a postgres:// URL',
    ],
    [
      { DATABASE_URL: "postern:S3cret@Db/Pass@db/postern" },
      'DATABASE_URL="***@db/postern" is invalid: expected a postgres:// URL',
    ],
    [{ POSTERN_TLS_CERT: "/c.pem" }, "POSTERN_TLS_CERT and POSTERN_TLS_KEY must be set together"],
    [
      { POSTERN_RETRY_BASE_SECONDS: "600", POSTERN_RETRY_MAX_SECONDS: "60" },
      "POSTERN_RETRY_MAX_SECONDS=60 is invalid: expected at least POSTERN_RETRY_BASE_SECONDS (600)",
    ],
  ];
  test.each(bad)("%o is refused with one line", (env, message) => {
    expect(() => parseConfig(env)).toThrow(ConfigError);
    expect(() => parseConfig(env)).toThrow(message);
    try {
      parseConfig(env);
    } catch (err) {
      expect((err as Error).message).not.toContain("\n");
    }
  });

  test("the secrets of a valid configuration are hidden in any text and in log lines", () => {
    const config = parseConfig({
      DATABASE_URL: "postgres://postern:p%40ss%22word@db/postern",
      POSTERN_ADMIN_TOKEN: "admin-token-0123456789",
      POSTERN_SMARTHOST: "smart.test",
      POSTERN_SMARTHOST_USER: "relay",
      POSTERN_SMARTHOST_PASSWORD: "smarthost-pass",
    });
    const redact = secretRedactor(config);
    expect(
      redact('auth failed for p@ss"word, p%40ss%22word, admin-token-0123456789 and smarthost-pass'),
    ).toBe("auth failed for ***, ***, *** and ***");
    expect(redact("connect to postgres://other:pw@elsewhere/x")).toBe(
      "connect to postgres://other:***@elsewhere/x",
    );
    const lines: string[] = [];
    const log = createLogger("info", (l) => lines.push(l), redact);
    log.error("database unavailable", { error: 'password "p@ss"word" rejected' });
    expect(lines[0]).not.toContain("p@ss");
    expect(lines[0]).toContain("***");
  });
});
