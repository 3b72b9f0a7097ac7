import { describe, expect, test } from "bun:test";
import { decodeBase64, decodePlain, encodeBase64 } from "../../src/auth/sasl.ts";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

describe("base64", () => {
  test.each([
    ["", ""],
    ["YQ==", "a"],
    ["YWI=", "ab"],
    ["YWJj", "abc"],
    ["VXNlcm5hbWU6", "Username:"],
    ["UGFzc3dvcmQ6", "Password:"],
    [b64("pässwörd ✓"), "pässwörd ✓"],
    [b64("a+b/c"), "a+b/c"],
  ])("decodeBase64(%p) is %p", (input, expected) => {
    expect(decodeBase64(input)).toBe(expected);
  });

  test.each([
    ["YQ", "no padding"],
    ["YQ=", "padding short"],
    ["Y", "one character"],
    ["YWJjZ", "length not a multiple of 4"],
    ["YW Jj", "space inside"],
    ["YWJj\r\n", "CRLF"],
    ["YQ==YQ==", "padding in the middle"],
    ["Y===", "three padding characters"],
    ["====", "only padding"],
    ["YW-j", "base64url alphabet"],
    ["YW_j", "base64url alphabet"],
    ["*", "the cancel marker"],
  ])("decodeBase64(%p) is refused (%s)", (input) => {
    expect(decodeBase64(input)).toBeUndefined();
  });

  test.each(["", "alice@example.test", "Username:", "pässwörd ✓", "\0a\0b", "x".repeat(300)])(
    "encodeBase64 round-trips %p",
    (s) => {
      const encoded = encodeBase64(s);
      expect(encoded).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
      expect(encoded.length % 4).toBe(0);
      expect(decodeBase64(encoded)).toBe(s);
    },
  );

  test("the LOGIN prompts are the usual ones", () => {
    expect(encodeBase64("Username:")).toBe("VXNlcm5hbWU6");
    expect(encodeBase64("Password:")).toBe("UGFzc3dvcmQ6");
  });
});

describe("PLAIN (RFC 4616)", () => {
  test.each([
    ["no authzid", "\0alice@example.test\0secret", "alice@example.test", "secret"],
    [
      "authzid equal to the login",
      "alice@example.test\0alice@example.test\0secret",
      "alice@example.test",
      "secret",
    ],
    [
      "authzid differing only in case",
      "Alice@Example.TEST\0alice@example.test\0pw",
      "alice@example.test",
      "pw",
    ],
    ["a password with spaces and UTF-8", "\0bob\0correct horse ✓", "bob", "correct horse ✓"],
    ["a one-character password", "\0bob\0x", "bob", "x"],
  ])("%s", (_name, raw, username, password) => {
    expect(decodePlain(b64(raw))).toEqual({ username, password });
  });

  test.each<[string, "malformed" | "authzid", string]>([
    ["not base64", "malformed", "not base64!"],
    ["empty", "malformed", ""],
    ["no NUL", "malformed", b64("alice secret")],
    ["one NUL", "malformed", b64("alice\0secret")],
    ["three NULs", "malformed", b64("\0alice\0sec\0ret")],
    ["empty login", "malformed", b64("\0\0secret")],
    ["empty password", "malformed", b64("\0alice\0")],
    ["only NULs", "malformed", b64("\0\0")],
    ["another identity as authzid", "authzid", b64("bob@example.test\0alice@example.test\0secret")],
  ])("%s → %s", (_name, expected, response) => {
    expect(decodePlain(response)).toBe(expected);
  });
});
