// Sender Rewriting Scheme for forwarded mail: the envelope sender becomes an address of ours,
// so SPF at the next hop checks our IP against our domain, and the original sender can be read
// back out for bounces. Format (as in libsrs2/postsrsd): SRS0=HASH=TT=domain=local@ourdomain.
import { createHmac } from "node:crypto";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** Two base32 digits of the day number, modulo 1024: enough to expire addresses after a while. */
function timestamp(now: Date): string {
  const day = Math.floor(now.getTime() / 86_400_000) % 1024;
  return BASE32[day >> 5]! + BASE32[day & 31]!;
}

function hash(secret: string, ...parts: string[]): string {
  return createHmac("sha1", secret).update(parts.join("").toLowerCase()).digest("base64").slice(0, 4);
}

/** The SRS0 address for `sender` at `ourDomain`; the null sender stays null. */
export function srsForward(sender: string, ourDomain: string, secret: string, now = new Date()): string {
  if (sender === "") return "";
  const at = sender.lastIndexOf("@");
  const local = sender.slice(0, at);
  const domain = sender.slice(at + 1);
  const tt = timestamp(now);
  return `SRS0=${hash(secret, tt, domain, local)}=${tt}=${domain}=${local}@${ourDomain}`;
}

/** SRS addresses older than this are refused (libsrs2's default): bounces come within days. */
const MAX_AGE_DAYS = 21;

/** The original sender of a recent SRS0 address we made, or undefined (not one, forged, or too old). */
export function srsReverse(address: string, secret: string, now = new Date()): string | undefined {
  const m = /^SRS0=([^=]{4})=([A-Z2-7]{2})=([^=]+)=(.+)@[^@]+$/i.exec(address);
  if (!m) return undefined;
  const [, h, tt, domain, local] = m as unknown as [string, string, string, string, string];
  const stamp = tt.toUpperCase();
  const age = (dayNumber(timestamp(now)) - dayNumber(stamp) + 1024) % 1024;
  if (age > MAX_AGE_DAYS) return undefined;
  // Compared without case: a hop on the way back may have changed it (as libsrs2 allows).
  return hash(secret, stamp, domain, local).toLowerCase() === h.toLowerCase()
    ? `${local}@${domain}`
    : undefined;
}

function dayNumber(tt: string): number {
  return (BASE32.indexOf(tt[0]!) << 5) | BASE32.indexOf(tt[1]!);
}
