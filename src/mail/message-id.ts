// The Message-IDs we make (for submissions that lack one, DSNs, composed mail): unique without
// coordination between instances, the time first so they sort, our name on the right (RFC 5322 3.6.4).
import { randomBytes } from "node:crypto";

/** `<time36.random@domain>`, angle brackets included. */
export function newMessageIdField(domain: string, now: Date): string {
  return `<${now.getTime().toString(36)}.${randomBytes(8).toString("hex")}@${domain}>`;
}
