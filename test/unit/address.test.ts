import { describe, expect, test } from "bun:test";
import { formatTarget, parseRouteTarget, parseTarget } from "../../src/domains/targets.ts";
import { addressProblem, domainProblem, patternMatches, patternProblem } from "../../src/mail/address.ts";

describe("domains and addresses", () => {
  test.each(["example.com", "a-b.example.test", "xn--bcher-kva.example"])("%s is a domain", (d) => {
    expect(domainProblem(d)).toBeUndefined();
  });
  test.each([
    ["localhost", "needs at least two labels"],
    ["a..b", 'label ""'],
    ["-a.com", 'label "-a"'],
    ["a_b.com", 'label "a_b"'],
    ["1.2.3.4", "numeric"],
    [`${"a".repeat(64)}.com`, "label"],
  ])("%s is refused (%s)", (d, why) => {
    expect(domainProblem(d)).toContain(why);
  });
  test.each(["alice@example.com", "a.b+tag@example.com", "ü@example.com"])("%s is an address", (a) => {
    expect(addressProblem(a)).toBeUndefined();
  });
  test.each([
    ["alice", "expected local@domain"],
    ["@example.com", "expected local@domain"],
    ["a..b@example.com", "local part"],
    ["a b@example.com", "local part"],
    [`${"a".repeat(65)}@example.com`, "longer than 64"],
    ["a@nodot", "domain needs"],
  ])("%s is refused (%s)", (a, why) => {
    expect(addressProblem(a)).toContain(why);
  });
  test("patterns", () => {
    expect(patternProblem("*@example.com")).toBeUndefined();
    expect(patternProblem("*@bad")).toContain("domain");
    expect(patternMatches("*@example.com", "x@example.com")).toBe(true);
    expect(patternMatches("*@example.com", "x@sub.example.com")).toBe(false);
    expect(patternMatches("a@example.com", "a@example.com")).toBe(true);
    expect(patternMatches("a@example.com", "b@example.com")).toBe(false);
  });
});

describe("route targets", () => {
  test.each([
    ["mailbox", "mailbox"],
    ["webhook:https://hooks.example.com/in", "webhook:https://hooks.example.com/in"],
    ["relay:inner.example.com", "relay:inner.example.com:25"],
    ["relay:127.0.0.1:2526", "relay:127.0.0.1:2526"],
    ["relay:[::1]:24", "relay:[::1]:24"],
    ["relay:lmtp:dovecot.internal", "relay:lmtp:dovecot.internal:24"],
    ["relay:lmtp:127.0.0.1:2424", "relay:lmtp:127.0.0.1:2424"],
    ["forward:Bob@Example.com", "forward:bob@example.com"],
  ])("%s parses and prints as %s", (raw, printed) => {
    expect(formatTarget(parseTarget(raw))).toBe(printed);
  });
  test.each([
    ["mailbox:x", "takes no argument"],
    ["webhook:ftp://x", "http(s)"],
    ["webhook:nope", "not a URL"],
    ["relay:host:99999", "HOST[:PORT]"],
    ["forward:nobody", "forward address"],
    ["smtp:x", "unknown target"],
    ["mx", "unknown target"],
  ])("%s is refused as a route target (%s)", (raw, why) => {
    expect(() => parseRouteTarget(raw)).toThrow(why);
  });
  test("mx is a delivery's target, not a route's", () => {
    expect(parseTarget("mx")).toEqual({ kind: "mx" });
    expect(formatTarget({ kind: "mx" })).toBe("mx");
  });
});
