import { describe, expect, test } from "bun:test";
import { type ReceivedInfo, receivedHeader, rfc5322Date } from "../../src/mail/received.ts";

const base: ReceivedInfo = {
  helo: "client.test",
  remoteIp: "192.0.2.7",
  hostname: "mx.postern.test",
  id: "QID123",
  esmtp: true,
  tls: undefined,
  authUser: undefined,
  recipients: ["bob@example.test"],
  date: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
};
const TLS = { protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" };

describe("receivedHeader", () => {
  test("the whole header, folded with CRLF and a tab", () => {
    expect(receivedHeader(base)).toBe(
      "Received: from client.test ([192.0.2.7])\r\n" +
        "\tby mx.postern.test (Postern) with ESMTP id QID123\r\n" +
        "\tfor <bob@example.test>; Fri, 2 Jan 2026 03:04:05 +0000\r\n",
    );
  });

  test.each<[string, string, Partial<ReceivedInfo>]>([
    ["HELO", "SMTP", { esmtp: false }],
    ["HELO even under TLS and AUTH", "SMTP", { esmtp: false, tls: TLS, authUser: "a@b.test" }],
    ["EHLO", "ESMTP", {}],
    ["EHLO with TLS", "ESMTPS", { tls: TLS }],
    ["EHLO with AUTH", "ESMTPA", { authUser: "alice@example.test" }],
    ["EHLO with TLS and AUTH", "ESMTPSA", { tls: TLS, authUser: "alice@example.test" }],
  ])("protocol keyword (RFC 3848): %s → %s", (_name, proto, patch) => {
    expect(receivedHeader({ ...base, ...patch })).toContain(`(Postern) with ${proto} id QID123\r\n`);
  });

  test("TLS details and the authenticated sender each get a line", () => {
    const h = receivedHeader({ ...base, tls: TLS, authUser: "alice@example.test" });
    expect(h.split("\r\n")).toEqual([
      "Received: from client.test ([192.0.2.7])",
      "\tby mx.postern.test (Postern) with ESMTPSA id QID123",
      "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)",
      "\t(authenticated sender: alice@example.test)",
      "\tfor <bob@example.test>; Fri, 2 Jan 2026 03:04:05 +0000",
      "",
    ]);
  });

  test.each([
    ["192.0.2.7", "[192.0.2.7]"],
    ["2001:db8::1", "[IPv6:2001:db8::1]"],
    ["::1", "[IPv6:::1]"],
  ])("the client address %s is written %s", (ip, literal) => {
    expect(receivedHeader({ ...base, remoteIp: ip })).toStartWith(
      `Received: from client.test (${literal})\r\n`,
    );
  });

  test.each([
    [[], "\tFri, 2 Jan 2026 03:04:05 +0000\r\n"],
    [["bob@example.test"], "\tfor <bob@example.test>; Fri, 2 Jan 2026 03:04:05 +0000\r\n"],
    [["a@example.test", "b@example.test"], "\tFri, 2 Jan 2026 03:04:05 +0000\r\n"],
  ])("recipients %p: the last line is %p (never a whole Bcc list)", (recipients, last) => {
    const h = receivedHeader({ ...base, recipients });
    expect(h.endsWith(last)).toBe(true);
    if (recipients.length !== 1) expect(h).not.toContain("for <");
  });

  test("every line ends with CRLF and no bare LF or CR appears", () => {
    const h = receivedHeader({ ...base, tls: TLS, authUser: "alice@example.test" });
    expect(h.replaceAll("\r\n", "")).not.toMatch(/[\r\n]/);
    expect(h.endsWith("\r\n")).toBe(true);
    for (const line of h.split("\r\n").slice(1, -1)) expect(line).toStartWith("\t");
  });
});

describe("rfc5322Date", () => {
  test.each([
    [Date.UTC(2026, 0, 2, 3, 4, 5), "Fri, 2 Jan 2026 03:04:05 +0000"],
    [Date.UTC(2026, 10, 29, 8, 23, 1), "Sun, 29 Nov 2026 08:23:01 +0000"],
    [Date.UTC(2024, 1, 29, 23, 59, 59), "Thu, 29 Feb 2024 23:59:59 +0000"],
    [Date.UTC(1999, 11, 31, 0, 0, 0), "Fri, 31 Dec 1999 00:00:00 +0000"],
    [0, "Thu, 1 Jan 1970 00:00:00 +0000"],
  ])("%d → %s", (ms, expected) => {
    expect(rfc5322Date(new Date(ms))).toBe(expected);
  });

  test("always UTC, whatever the local zone", () => {
    const d = new Date("2026-06-15T23:30:00-05:00");
    expect(rfc5322Date(d)).toBe("Tue, 16 Jun 2026 04:30:00 +0000");
  });
});
