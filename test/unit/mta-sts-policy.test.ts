import { describe, expect, test } from "bun:test";
import { certificateFailureType, mxAllowed, readPolicyText } from "../../src/mta-sts/policy.ts";

describe("MTA-STS policy", () => {
  const policy = readPolicyText(
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.backup.example.test\r\nmax_age: 604800\r\n",
  );

  test("a policy file is read into mode, MX patterns and max_age", () => {
    expect(policy).toEqual({
      mode: "enforce",
      mx: ["mail.example.test", "*.backup.example.test"],
      maxAge: 604800,
    });
  });

  test.each([
    ["mail.example.test", true],
    ["MAIL.example.test.", true],
    ["a.backup.example.test", true],
    ["a.b.backup.example.test", false], // the wildcard is one label
    ["backup.example.test", false],
    ["evil-mail.example.test", false],
  ])("MX %s allowed: %p", (host, allowed) => {
    expect(mxAllowed(policy, host)).toBe(allowed);
  });

  test.each([
    ["version: STSv1\nmode: enforce\nmax_age: 10\n", /mx/i],
    ["version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 10\n", /version/i],
    ["version: STSv1\nmode: strict\nmx: a.test\nmax_age: 10\n", /mode/i],
    ["<html>not found</html>", /version/i],
  ])("a bad policy is refused, naming the problem: %j", (text, problem) => {
    expect(() => readPolicyText(text)).toThrow(problem);
  });

  test.each([
    ["ERR_TLS_CERT_ALTNAME_INVALID", "certificate-host-mismatch"],
    ["CERT_HAS_EXPIRED", "certificate-expired"],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", "certificate-not-trusted"],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "certificate-not-trusted"],
    ["CERT_SIGNATURE_FAILURE", "validation-failure"],
  ])("node:tls %s is the RFC 8460 result %s", (code, type) => {
    expect(certificateFailureType(code)).toBe(type as ReturnType<typeof certificateFailureType>);
  });
});
