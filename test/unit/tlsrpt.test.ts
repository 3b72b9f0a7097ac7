// TLS-RPT (RFC 8460): the _smtp._tls record, the report we build, and reading reports mailed to
// us (cases in test/data/tls-reports, made with Python's email package, not ours).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readTlsReportMessage } from "../../src/tlsrpt/received.ts";
import { readTlsRptRecord } from "../../src/tlsrpt/record.ts";
import { buildReport, reportFileName } from "../../src/tlsrpt/report.ts";

const data = (name: string) => readFileSync(join(import.meta.dir, "../data/tls-reports", name));

describe("the _smtp._tls record", () => {
  test.each<[string[], ReturnType<typeof readTlsRptRecord>]>([
    [["v=TLSRPTv1; rua=mailto:tls@example.test"], [{ kind: "mailto", address: "tls@example.test" }]],
    [
      ["v=TLSRPTv1;rua=mailto:a@x.test,https://reports.x.test/v1/tlsrpt"],
      [
        { kind: "mailto", address: "a@x.test" },
        { kind: "https", url: "https://reports.x.test/v1/tlsrpt" },
      ],
    ],
    [["v=spf1 -all", "v=TLSRPTv1; rua=mailto:r%2Bt@x.test"], [{ kind: "mailto", address: "r+t@x.test" }]],
    [["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"], undefined], // two: none
    [["v=TLSRPTv1; rua=http://plain.test/"], undefined], // only https and mailto
    [["v=TLSRPTv1"], undefined],
    [[], undefined],
  ])("%j", (txts, expected) => {
    expect(readTlsRptRecord(txts)).toEqual(expected);
  });
});

describe("the report we send", () => {
  const start = new Date("2026-12-01T00:00:00Z");
  const end = new Date("2026-12-02T00:00:00Z");
  const policy = {
    id: "abc",
    mode: "enforce",
    mx: ["mx.example.test", "*.backup.example.test"],
    maxAge: 604800,
  };

  test("sessions grouped by policy, successes summed, failures detailed", () => {
    const report = buildReport({
      domain: "example.test",
      submitter: "mx.ours.test",
      start,
      end,
      sessions: [
        { policy, result: "success", mx: "", ip: "", detail: "", count: 7 },
        {
          policy,
          result: "starttls-not-supported",
          mx: "mx.example.test",
          ip: "192.0.2.1",
          detail: "mx.example.test offers no STARTTLS",
          count: 2,
        },
        { policy: undefined, result: "success", mx: "", ip: "", detail: "", count: 3 },
      ],
    });
    expect(report).toEqual({
      "organization-name": "mx.ours.test",
      "date-range": { "start-datetime": "2026-12-01T00:00:00Z", "end-datetime": "2026-12-02T00:00:00Z" },
      "contact-info": "postmaster@mx.ours.test",
      "report-id": "1796083200.example.test@mx.ours.test",
      policies: [
        {
          policy: {
            "policy-type": "sts",
            "policy-string": [
              "version: STSv1",
              "mode: enforce",
              "mx: mx.example.test",
              "mx: *.backup.example.test",
              "max_age: 604800",
            ],
            "policy-domain": "example.test",
            "mx-host": ["mx.example.test", "*.backup.example.test"],
          },
          summary: { "total-successful-session-count": 7, "total-failure-session-count": 2 },
          "failure-details": [
            {
              "result-type": "starttls-not-supported",
              "receiving-mx-hostname": "mx.example.test",
              "receiving-ip": "192.0.2.1",
              "failed-session-count": 2,
              "failure-reason-code": "mx.example.test offers no STARTTLS",
            },
          ],
        },
        {
          policy: { "policy-type": "no-policy-found", "policy-domain": "example.test" },
          summary: { "total-successful-session-count": 3, "total-failure-session-count": 0 },
        },
      ],
    });
    expect(reportFileName({ domain: "example.test", submitter: "mx.ours.test", start, end })).toBe(
      "mx.ours.test!example.test!1796083200!1796169600.json.gz",
    );
  });
});

describe("reports mailed to us", () => {
  test("a Google-style multipart/report with a gzip'd report is read", async () => {
    const report = await readTlsReportMessage(data("google-style.eml"));
    expect(report["organization-name"]).toBe("Google Inc.");
    expect(report["report-id"]).toBe("2026-11-30T00:00:00Z_example.test");
    expect(report.policies[0]!.policy["policy-domain"]).toBe("example.test");
    expect(report.policies[0]).toMatchObject({ summary: { "total-failure-session-count": 2 } });
  });

  test.each([
    ["missing-report-id.eml", /report-id/],
    ["no-report.eml", /no application\/tlsrpt\+gzip or \+json part/],
  ])("%s is refused, saying why", async (name, why) => {
    await expect(readTlsReportMessage(data(name))).rejects.toThrow(why);
  });
});
