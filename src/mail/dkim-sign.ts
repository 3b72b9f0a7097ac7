// DKIM signing (RFC 6376, relaxed/relaxed) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463).
// mailauth verifies our inbound mail, but its signer signs only the header fields that are
// present, and we want From oversigned (listed once more than it occurs) so that nobody can add
// a second From to a signed message: so signing is done here, in a few lines of RFC text.
import { createHash, createPrivateKey, type KeyObject, sign } from "node:crypto";
import { bufferView } from "../bytes.ts";
import { type HeaderField, splitMessage } from "./headers.ts";

/** Header fields signed when present (RFC 6376 5.4.1), From first. */
const SIGNED_FIELDS = [
  "from",
  "to",
  "cc",
  "subject",
  "date",
  "message-id",
  "reply-to",
  "in-reply-to",
  "references",
  "mime-version",
  "content-type",
  "content-transfer-encoding",
  "list-id",
  "list-unsubscribe",
  "list-unsubscribe-post",
];

export interface DkimKey {
  domain: string;
  selector: string;
  /** PKCS#8 PEM, RSA or Ed25519. */
  privateKey: string;
}

/**
 * Keys by their PEM text: parsing a PEM costs about a fifth of an RSA signature, and the same few
 * keys (two per local domain) sign every message. Cleared when full (keys rotated many times).
 */
const parsedKeys = new Map<string, KeyObject>();

function parsedKey(pem: string): KeyObject {
  let key = parsedKeys.get(pem);
  if (!key) {
    if (parsedKeys.size >= 1000) parsedKeys.clear();
    key = createPrivateKey(pem);
    parsedKeys.set(pem, key);
  }
  return key;
}

/** RFC 6376 3.4.2. */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(":");
  const name = raw.slice(0, colon).trim().toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, "")
    .replace(/[ \t]+/g, " ")
    .trim();
  return `${name}:${value}`;
}

/** RFC 6376 3.4.4. */
export function relaxedBody(body: string): string {
  const lines = body.split("\r\n").map((l) => l.replace(/[ \t]+/g, " ").replace(/ $/, ""));
  // A body ending in CRLF splits into a last empty element; empty lines at the end are dropped.
  while (lines.length > 0 && lines.at(-1) === "") lines.pop();
  return lines.length === 0 ? "" : `${lines.join("\r\n")}\r\n`;
}

/** The DKIM-Signature fields for `message`, one per key, to be prepended to it. */
export function dkimSign(message: Uint8Array, keys: DkimKey[], now = new Date()): string {
  const text = bufferView(message).toString("latin1");
  const { fields, body } = splitMessage(text);
  const bodyHash = createHash("sha256").update(relaxedBody(body), "latin1").digest("base64");

  // Bottom-up selection (RFC 6376 5.4.2): each listed name takes the last field not yet used.
  const names: string[] = [];
  for (const name of SIGNED_FIELDS) {
    for (const f of fields) if (f.name === name) names.push(name);
  }
  names.push("from"); // the oversigned From: names one more than occur, which signs "no other From"
  const used = new Set<HeaderField>();
  const signedText = names
    .map((name) => {
      for (let i = fields.length - 1; i >= 0; i--) {
        const f = fields[i]!;
        if (f.name === name && !used.has(f)) {
          used.add(f);
          return `${relaxedHeader(f.raw)}\r\n`;
        }
      }
      return ""; // a name with no field left contributes nothing
    })
    .join("");

  return keys
    .map((key) => {
      const privateKey = parsedKey(key.privateKey);
      const ed25519 = privateKey.asymmetricKeyType === "ed25519";
      // Folded (h=, bh= and b= on lines of their own) to stay well under 998 octets a line.
      const unsigned = [
        `DKIM-Signature: v=1; a=${ed25519 ? "ed25519-sha256" : "rsa-sha256"}; c=relaxed/relaxed; d=${key.domain}; s=${key.selector}; t=${Math.floor(now.getTime() / 1000)};`,
        `h=${names.join(":")};`,
        `bh=${bodyHash};`,
        "b=",
      ].join("\r\n\t");
      const data = Buffer.from(signedText + relaxedHeader(unsigned), "latin1");
      const signature = ed25519
        ? sign(null, createHash("sha256").update(data).digest(), privateKey) // RFC 8463 3: sign the hash
        : sign("sha256", data, privateKey);
      return `${unsigned}${signature.toString("base64")}\r\n`;
    })
    .join("");
}
