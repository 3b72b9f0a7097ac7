import { createHash, timingSafeEqual } from "node:crypto";

/** The token of an `Authorization: Bearer …` header, if that is what it is. */
export function bearerToken(header: string | null): string | undefined {
  return /^Bearer (.+)$/.exec(header ?? "")?.[1];
}

/** Compares a bearer token in constant time (hashing first makes the lengths equal). */
export function tokenMatches(given: string, token: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(token));
}
