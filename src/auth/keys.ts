// API keys: an application's credential, scoped to sending from its domains. The key is random
// (24 bytes), shown once, stored as its SHA-256: a fast hash is enough for a secret that cannot be
// guessed, and keeps a bearer check or an SMTP AUTH cheap.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { asc, eq } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { apiKeys } from "../db/schema.ts";

export type ApiKey = typeof apiKeys.$inferSelect;

const PREFIX = "pk_";

/** Why `name` cannot name a key, or undefined. No `@`: a key name never reads as a user's login. */
export function keyNameProblem(name: string): string | undefined {
  return /^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)
    ? undefined
    : "expected 1 to 63 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit)";
}

/** True when the login is a key's name rather than a user's address. */
export function isKeyName(login: string): boolean {
  return !login.includes("@");
}

function hashKey(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** Adds a key; returns the secret, which is not kept. */
export async function addKey(
  db: Db,
  o: { name: string; domains: string[]; limitPerHour: number | undefined },
): Promise<string> {
  const secret = PREFIX + randomBytes(24).toString("base64url");
  await db.insert(apiKeys).values({
    name: o.name,
    secretHash: hashKey(secret),
    domains: o.domains.map((d) => d.toLowerCase()),
    limitPerHour: o.limitPerHour ?? null,
  });
  return secret;
}

export async function findKey(db: Db, name: string): Promise<ApiKey | undefined> {
  const [row] = await db.select().from(apiKeys).where(eq(apiKeys.name, name.toLowerCase()));
  return row;
}

/** The key whose secret this is (a bearer token), if any. */
export async function keyBySecret(db: Db, secret: string): Promise<ApiKey | undefined> {
  if (!secret.startsWith(PREFIX)) return undefined;
  const [row] = await db
    .select()
    .from(apiKeys)
    .where(eq(apiKeys.secretHash, hashKey(secret)));
  return row;
}

/** The key named `name` if `secret` is its key; compared in constant time, found or not. */
export async function verifyKey(db: Db, name: string, secret: string): Promise<ApiKey | undefined> {
  const key = await findKey(db, name);
  const expected = Buffer.from(key?.secretHash ?? hashKey(randomBytes(24).toString("hex")), "hex");
  const ok = timingSafeEqual(Buffer.from(hashKey(secret), "hex"), expected);
  return key && ok ? key : undefined;
}

export async function listKeys(db: Db): Promise<ApiKey[]> {
  return db.select().from(apiKeys).orderBy(asc(apiKeys.name));
}

export async function removeKey(db: Db, name: string): Promise<boolean> {
  const rows = await db.delete(apiKeys).where(eq(apiKeys.name, name.toLowerCase())).returning();
  return rows.length > 0;
}

/** The sender patterns a key may use: any address of its domains. */
export function keyMaySendAs(key: Pick<ApiKey, "domains">): string[] {
  return key.domains.map((d) => `*@${d}`);
}
