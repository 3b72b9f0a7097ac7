// What an MSA does to a submitted message (RFC 6409 §8): it needs a From (and Sender) the user
// may use, and gets the Date and Message-ID it lacks.

import { bufferView } from "../bytes.ts";
import { patternMatches } from "./address.ts";
import { fieldAddresses, readHeaders } from "./headers.ts";
import { newMessageIdField } from "./message-id.ts";
import { rfc5322Date } from "./received.ts";

export type SubmissionCheck =
  | { ok: true; content: Uint8Array }
  | { ok: false; problem: "no-from" }
  | { ok: false; problem: "many-from" }
  | { ok: false; problem: "from-not-owned"; address: string };

/**
 * Checks the header From against the patterns the user may send as, and adds Date and
 * Message-ID where missing, just below the trace headers.
 */
export function fixUpSubmission(
  content: Uint8Array,
  maySendAs: string[],
  hostname: string,
  now: Date,
): SubmissionCheck {
  const headers = readHeaders(content);
  const froms = headers.filter(([n]) => n === "from");
  // A second From would ride along under our DKIM signature (RFC 5322 3.6 allows one).
  if (froms.length > 1) return { ok: false, problem: "many-from" };
  const from = froms[0];
  const addresses = from ? fieldAddresses(from[1]) : [];
  if (addresses.length === 0) return { ok: false, problem: "no-from" };
  // Every author, and the Sender when there is one: each is shown as who sent it.
  const senders = headers.filter(([n]) => n === "sender").flatMap(([, v]) => fieldAddresses(v));
  const foreign = [...addresses, ...senders].find((a) => !maySendAs.some((p) => patternMatches(p, a)));
  if (foreign) return { ok: false, problem: "from-not-owned", address: foreign };
  const added: string[] = [];
  if (!headers.some(([n]) => n === "date")) added.push(`Date: ${rfc5322Date(now)}\r\n`);
  if (!headers.some(([n]) => n === "message-id")) {
    added.push(`Message-ID: ${newMessageIdField(hostname, now)}\r\n`);
  }
  if (added.length === 0) return { ok: true, content };
  // Trace fields (Received) stay on top, as RFC 5321 4.4 wants them first.
  const text = bufferView(content);
  let offset = 0;
  const lineEnd = (from: number) => {
    const end = text.indexOf("\r\n", from);
    return end < 0 ? text.length : end + 2;
  };
  while (
    offset < text.length &&
    text
      .subarray(offset, offset + 9)
      .toString("latin1")
      .toLowerCase() === "received:"
  ) {
    offset = lineEnd(offset);
    while (offset < text.length && (text[offset] === 32 || text[offset] === 9)) offset = lineEnd(offset);
  }
  return {
    ok: true,
    content: Buffer.concat([text.subarray(0, offset), Buffer.from(added.join("")), text.subarray(offset)]),
  };
}
