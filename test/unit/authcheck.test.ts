import { describe, expect, test } from "bun:test";
import { readAuthservId, stripForgedAuthResults } from "../../src/mail/authcheck.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("stripForgedAuthResults", () => {
  const body = "\r\n\r\nbody\r\n";
  test.each([
    ["plain", "Authentication-Results: mx.example.test; dkim=pass"],
    ["other case", "authentication-results: MX.Example.Test; spf=pass"],
    ["folded before the id", "Authentication-Results:\r\n\tmx.example.test;\r\n\tdkim=pass"],
    ["comment before the id", "Authentication-Results: (forged) mx.example.test; dmarc=pass"],
    ["folded before the colon", "Authentication-Results\r\n : mx.example.test; dmarc=pass"],
    ["a quoted-string", 'Authentication-Results: "mx.example.test"; dkim=pass header.d=bank.test'],
    ["a quoted-string with a quoted-pair", 'Authentication-Results: "mx.exam\\ple.test"; dkim=pass'],
    ["a nested comment", "Authentication-Results: (a(b)c) mx.example.test; dmarc=pass"],
    ["a comment holding an escaped paren", "Authentication-Results: (a\\)b) mx.example.test; dmarc=pass"],
    ["a folded comment", "Authentication-Results: (a\r\n (b)\r\n c)\r\n MX.EXAMPLE.TEST; spf=pass"],
    ["a trailing dot", "Authentication-Results: mx.example.test.; dkim=pass"],
    ["a version after the id", "Authentication-Results: mx.example.test 1; dkim=pass"],
    ["no space before the semicolon", "Authentication-Results:mx.example.test;dkim=pass"],
  ])("removes a field claiming our authserv-id (%s)", (_name, field) => {
    const out = dec(
      stripForgedAuthResults(enc(`From: a@b.test\r\n${field}\r\nSubject: s${body}`), "mx.example.test"),
    );
    expect(out).toBe(`From: a@b.test\r\nSubject: s${body}`);
  });

  test("keeps other hosts' results and leaves the message untouched", () => {
    const raw = enc(
      [
        "Authentication-Results: mx.example.test.evil; dkim=pass",
        "Authentication-Results: other.test; spf=pass",
        'Authentication-Results: "other.test (mx.example.test)"; spf=pass',
        "Authentication-Results: (mx.example.test) other.test; spf=pass",
      ].join("\r\n") + body,
    );
    expect(stripForgedAuthResults(raw, "mx.example.test")).toBe(raw);
  });

  test.each([
    ["mx.example.test; dkim=pass", "mx.example.test"],
    ['  "quoted \\"id\\""; none', 'quoted "id"'],
    ["(c (nested) \\( more) id.test 1; none", "id.test"],
    [" ; none", undefined],
    ["", undefined],
  ])("readAuthservId(%p) is %p", (value, id) => {
    expect(readAuthservId(value)).toBe(id);
  });
});
