import { createHash, timingSafeEqual } from "node:crypto";

/** Compares the bearer token in constant time (hashing first makes the lengths equal). */
export function bearerMatches(header: string | null, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? "");
  if (!m) return false;
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}
