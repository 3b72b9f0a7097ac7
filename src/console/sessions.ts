// Console sessions: after the admin token is given once, a random secret in an HttpOnly,
// SameSite=Strict cookie; the database keeps only its hash (a database dump logs no one in),
// with the CSRF token every state-changing form must carry, and an expiry.
import { createHash, randomBytes } from "node:crypto";
import { eq, lt, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { adminSessions } from "../db/schema.ts";

export const SESSION_COOKIE = "postern_session";
/** A login form's own CSRF token (double submit: cookie and field), before there is a session. */
export const LOGIN_COOKIE = "postern_login";
export const SESSION_SECONDS = 8 * 3600;

const hash = (secret: string) => createHash("sha256").update(secret).digest("hex");

export const newSecret = () => randomBytes(32).toString("base64url");

export interface ConsoleSession {
  csrf: string;
}

export async function startSession(db: Db): Promise<{ secret: string; session: ConsoleSession }> {
  const secret = newSecret();
  const csrf = newSecret();
  await db.delete(adminSessions).where(lt(adminSessions.expiresAt, sql`now()`));
  await db.insert(adminSessions).values({
    idHash: hash(secret),
    csrf,
    expiresAt: new Date(Date.now() + SESSION_SECONDS * 1000),
  });
  return { secret, session: { csrf } };
}

export async function findSession(db: Db, secret: string | undefined): Promise<ConsoleSession | undefined> {
  if (!secret) return undefined;
  const [row] = await db
    .select()
    .from(adminSessions)
    .where(eq(adminSessions.idHash, hash(secret)));
  return row && row.expiresAt.getTime() > Date.now() ? { csrf: row.csrf } : undefined;
}

export async function endSession(db: Db, secret: string): Promise<void> {
  await db.delete(adminSessions).where(eq(adminSessions.idHash, hash(secret)));
}

/** The cookies of a request, by name. */
export function cookies(req: Request): Map<string, string> {
  const jar = new Map<string, string>();
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const eqAt = part.indexOf("=");
    if (eqAt > 0) jar.set(part.slice(0, eqAt).trim(), part.slice(eqAt + 1).trim());
  }
  return jar;
}

/** A Set-Cookie value: HttpOnly, SameSite=Strict, path /admin; Secure when the console is on TLS. */
export function cookie(name: string, value: string, maxAge: number, secure: boolean): string {
  return `${name}=${value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure ? "; Secure" : ""}`;
}
