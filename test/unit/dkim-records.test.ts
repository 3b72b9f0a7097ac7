import { describe, expect, test } from "bun:test";
import { createPublicKey, sign, verify } from "node:crypto";
import { domainRecords, toZoneFile, txtStrings } from "../../src/domains/records.ts";
import { generateDkimKeys } from "../../src/mail/dkim.ts";

/** Reads the TXT records back out of the printed zone text, joining their character-strings. */
function parseZoneTxt(zone: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of zone.split("\n")) {
    const m = /^(\S+)\.\t\d+\tIN\tTXT\t(.*)$/.exec(line);
    if (!m) continue;
    const strings = [...m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => s[1]!);
    for (const s of strings) expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
    out.set(`${m[1]}`, strings.join(""));
  }
  return out;
}

function tags(value: string): Record<string, string> {
  return Object.fromEntries(value.split(";").map((t) => t.trim().split("=", 2) as [string, string]));
}

describe("DKIM keys and DNS records", () => {
  const keys = generateDkimKeys();
  const domain = {
    name: "example.test",
    dkimSelector: "s1",
    dkimRsaKey: keys.rsa,
    dkimEd25519Key: keys.ed25519,
    mtaStsMode: "none" as const,
  };
  const zone = toZoneFile(domainRecords(domain, "mx.example.test"));
  const txt = parseZoneTxt(zone);
  const message = Buffer.from("the data a DKIM signature covers");

  test("zone has MX, SPF, both DKIM keys and DMARC", () => {
    expect(zone).toContain("example.test.\t3600\tIN\tMX\t10 mx.example.test.");
    expect(txt.get("example.test")).toStartWith("v=spf1 ");
    expect(txt.get("_dmarc.example.test")).toStartWith("v=DMARC1; p=");
    expect(txt.has("s1-rsa._domainkey.example.test")).toBe(true);
    expect(txt.has("s1-ed25519._domainkey.example.test")).toBe(true);
  });

  test("the RSA record, split into strings, is the 2048-bit public half of the stored key", () => {
    const rec = tags(txt.get("s1-rsa._domainkey.example.test")!);
    expect(rec.v).toBe("DKIM1");
    expect(rec.k).toBe("rsa");
    const pub = createPublicKey({ key: Buffer.from(rec.p!, "base64"), format: "der", type: "spki" });
    expect(pub.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const signature = sign("sha256", message, keys.rsa);
    expect(verify("sha256", message, pub, signature)).toBe(true);
  });

  test("the Ed25519 record is the raw 32-byte public key of the stored key", () => {
    const rec = tags(txt.get("s1-ed25519._domainkey.example.test")!);
    expect(rec.k).toBe("ed25519");
    const raw = Buffer.from(rec.p!, "base64");
    expect(raw.length).toBe(32);
    // Re-wrap the raw key in the fixed SPKI prefix for Ed25519 (RFC 8410) to verify with it.
    const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]);
    const pub = createPublicKey({ key: spki, format: "der", type: "spki" });
    expect(verify(null, message, pub, sign(null, message, keys.ed25519))).toBe(true);
  });

  test("txtStrings splits at 255 octets and keeps every character", () => {
    const value = "x".repeat(600);
    const parts = txtStrings(value);
    expect(parts.map((p) => p.length)).toEqual([255, 255, 90]);
    expect(parts.join("")).toBe(value);
  });
});
