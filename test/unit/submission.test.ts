import { describe, expect, test } from "bun:test";
import { fieldAddresses } from "../../src/mail/headers.ts";
import { fixUpSubmission } from "../../src/mail/submission.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const NOW = new Date(Date.UTC(2026, 10, 29, 8, 23, 1));
const RECEIVED =
  "Received: from c ([127.0.0.1])\r\n\tby mx.example.test (Postern) with ESMTPSA id X\r\n\t; date\r\n";

describe("fieldAddresses: addresses as RFC 5322 reads them", () => {
  test.each([
    ["alice@example.test", ["alice@example.test"]],
    ["Alice <Alice@Example.test>", ["alice@example.test"]],
    ['"Smith, A" <a@example.test>, b@example.test', ["a@example.test", "b@example.test"]],
    ["a@example.test, b@example.test", ["a@example.test", "b@example.test"]],
    ["undisclosed", []],
    // a comment is not an address
    ["ceo@other.test (<alice@example.test>)", ["ceo@other.test"]],
    ["Alice (alice@example.test) <ceo@other.test>", ["ceo@other.test"]],
    ["Alice (a (nested) comment) <alice@example.test> (more)", ["alice@example.test"]],
    // a display name is not an address, quoted or encoded
    ['"alice@example.test" <ceo@other.test>', ["ceo@other.test"]],
    ["=?utf-8?q?alice=40example.test?= <ceo@other.test>", ["ceo@other.test"]],
    // every address of a list and of a group counts
    ["<alice@example.test>, ceo@other.test", ["alice@example.test", "ceo@other.test"]],
    ["team: alice@example.test, ceo@other.test;", ["alice@example.test", "ceo@other.test"]],
    ["undisclosed-recipients:;", []],
    ['"quoted local"@example.test', ["quoted local@example.test"]],
  ])("%s", (value, expected) => {
    expect(fieldAddresses(value)).toEqual(expected);
  });
});

describe("fixUpSubmission", () => {
  const allowed = ["u@example.test", "*@example.test"];

  test("adds Date and Message-ID below the trace header, keeps the rest byte for byte", () => {
    const body = "From: u@example.test\r\nSubject: hi\r\n\r\nbody\r\n";
    const r = fixUpSubmission(enc(RECEIVED + body), allowed, "mx.example.test", NOW);
    expect(r.ok).toBe(true);
    const text = dec((r as { content: Uint8Array }).content);
    expect(text.startsWith(RECEIVED)).toBe(true);
    const added = text.slice(RECEIVED.length, text.length - body.length);
    expect(added).toMatch(
      /^Date: Sun, 29 Nov 2026 08:23:01 \+0000\r\nMessage-ID: <[a-z0-9]+\.[0-9a-f]{16}@mx\.example\.test>\r\n$/,
    );
    expect(text.endsWith(body)).toBe(true);
  });

  test("a message that has both is left untouched", () => {
    const raw = enc(`${RECEIVED}From: a@example.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nb\r\n`);
    const r = fixUpSubmission(raw, allowed, "h", NOW);
    expect(r).toEqual({ ok: true, content: raw });
  });

  test("a second From header is refused: it would travel under our signature", () => {
    const raw = enc(`${RECEIVED}From: u@example.test\r\nFrom: "Bank" <ceo@bank.test>\r\n\r\nb\r\n`);
    expect(fixUpSubmission(raw, allowed, "h", NOW)).toEqual({ ok: false, problem: "many-from" });
  });

  test("no From header is refused", () => {
    expect(fixUpSubmission(enc(`${RECEIVED}Subject: x\r\n\r\nb\r\n`), allowed, "h", NOW)).toEqual({
      ok: false,
      problem: "no-from",
    });
  });

  test("a From the user may not use is refused, naming it", () => {
    const r = fixUpSubmission(enc("From: Boss <ceo@other.test>\r\n\r\nb\r\n"), allowed, "h", NOW);
    expect(r).toEqual({ ok: false, problem: "from-not-owned", address: "ceo@other.test" });
  });

  // more forms, one file each: test/data/from (test/unit/data-cases.test.ts)
});
