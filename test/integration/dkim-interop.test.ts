import { describe, expect, test } from "bun:test";
import { dkimVerify } from "mailauth";
import { dkimTxtValue, generateDkimKeys } from "../../src/mail/dkim.ts";
import { dkimSign } from "../../src/mail/dkim-sign.ts";
import { dkimpyVerify, haveDkimpy } from "../helpers/dkimpy.ts";

const keys = generateDkimKeys();
const records = {
  "k-rsa._domainkey.example.test": dkimTxtValue(keys.rsa),
  "k-ed25519._domainkey.example.test": dkimTxtValue(keys.ed25519),
};
const rsaKey = { domain: "example.test", selector: "k-rsa", privateKey: keys.rsa };
const edKey = { domain: "example.test", selector: "k-ed25519", privateKey: keys.ed25519 };

const MESSAGE = [
  "From: Alice <alice@example.test>",
  "To: bob@remote.test",
  "Subject:   folded",
  "  subject with   spaces ",
  "Date: Sun, 29 Nov 2026 08:23:01 +0000",
  "Message-ID: <1@example.test>",
  "X-Unsigned: not covered",
  "",
  "Hello  Bob, ",
  "",
  "a line with trailing tabs\t\t",
  "",
  "",
].join("\r\n");

const sign = (keysToUse: (typeof rsaKey)[], message = MESSAGE) =>
  new TextEncoder().encode(dkimSign(new TextEncoder().encode(message), keysToUse) + message);

/** mailauth's verifier, given our records as its DNS. */
async function mailauthResults(signed: Uint8Array) {
  const resolver = async (name: string, type: string) => {
    const value = records[name as keyof typeof records];
    if (type !== "TXT" || !value) throw Object.assign(new Error("no such record"), { code: "ENOTFOUND" });
    return [[value.slice(0, 255), value.slice(255)].filter(Boolean)];
  };
  const res = await dkimVerify(Buffer.from(signed), { resolver });
  return res.results.map((r: { status: { result: string } }) => r.status.result);
}

describe("our DKIM signatures", () => {
  test("RSA and Ed25519 signatures each verify in mailauth", async () => {
    expect(await mailauthResults(sign([rsaKey]))).toEqual(["pass"]);
    expect(await mailauthResults(sign([edKey]))).toEqual(["pass"]);
    expect(await mailauthResults(sign([rsaKey, edKey]))).toEqual(["pass", "pass"]);
  });

  test.skipIf(!haveDkimpy)("RSA and Ed25519 signatures each verify in dkimpy (python3-dkim)", () => {
    expect(dkimpyVerify(sign([rsaKey]), records)).toEqual([true]);
    expect(dkimpyVerify(sign([edKey]), records)).toEqual([true]);
    expect(dkimpyVerify(sign([rsaKey, edKey]), records)).toEqual([true, true]);
  });

  test("From is oversigned: a second From added later breaks the signature", async () => {
    const signed = new TextDecoder().decode(sign([rsaKey]));
    expect(signed).toMatch(/h=from:to:subject:date:message-id:from;/);
    const forged = signed.replace("\r\n\r\n", "\r\nFrom: ceo@example.test\r\n\r\n");
    expect(await mailauthResults(new TextEncoder().encode(forged))).not.toEqual(["pass"]);
    if (haveDkimpy) expect(dkimpyVerify(new TextEncoder().encode(forged), records)).toEqual([false]);
  });

  test("a changed body or signed header fails; an unsigned header may change", async () => {
    const signed = new TextDecoder().decode(sign([rsaKey]));
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(await mailauthResults(enc(signed.replace("Hello  Bob", "Hello Eve")))).not.toEqual(["pass"]);
    expect(await mailauthResults(enc(signed.replace("To: bob@", "To: eve@")))).not.toEqual(["pass"]);
    expect(await mailauthResults(enc(signed.replace("not covered", "changed")))).toEqual(["pass"]);
  });
});
