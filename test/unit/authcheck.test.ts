import { describe, expect, test } from "bun:test";
import { stripForgedAuthResults } from "../../src/mail/authcheck.ts";

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
  ])("removes a field claiming our authserv-id (%s)", (_name, field) => {
    const out = dec(
      stripForgedAuthResults(enc(`From: a@b.test\r\n${field}\r\nSubject: s${body}`), "mx.example.test"),
    );
    expect(out).toBe(`From: a@b.test\r\nSubject: s${body}`);
  });

  test("keeps other hosts' results and leaves the message untouched", () => {
    const raw = enc(
      `Authentication-Results: mx.example.test.evil; dkim=pass\r\nAuthentication-Results: other.test; spf=pass${body}`,
    );
    expect(stripForgedAuthResults(raw, "mx.example.test")).toBe(raw);
  });
});
