// AUTH lockout per client IP, across every node on the database: after `failures` wrong logins
// from one address within a window, that address's AUTH is refused (454 4.7.0) for the lockout
// time, even with the right password. Other addresses, and the same user elsewhere, go on.
import { eq, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { authFailures } from "../db/schema.ts";

export interface LockoutPolicy {
  /** POSTERN_AUTH_LOCKOUT_FAILURES; 0: no lockout. */
  failures: number;
  windowSeconds: number;
  lockSeconds: number;
}

export const LOCKOUT_DEFAULTS = { windowSeconds: 15 * 60, lockSeconds: 15 * 60 };

/** Until when `ip` is locked out, if it is now. */
export async function lockedOutUntil(db: Db, ip: string): Promise<Date | undefined> {
  const [row] = await db
    .select({ until: authFailures.lockedUntil })
    .from(authFailures)
    .where(eq(authFailures.ip, ip));
  return row?.until && row.until.getTime() > Date.now() ? row.until : undefined;
}

/**
 * Counts a wrong login from `ip` (a window starts at its first failure and runs `windowSeconds`);
 * returns when the lockout it brings about ends, if it does.
 */
export async function recordAuthFailure(db: Db, ip: string, p: LockoutPolicy): Promise<Date | undefined> {
  const stale = sql`${authFailures.firstAt} < now() - make_interval(secs => ${p.windowSeconds})`;
  const failures = sql`case when ${stale} then 1 else ${authFailures.failures} + 1 end`;
  const lockUntil = sql`now() + make_interval(secs => ${p.lockSeconds})`;
  const [row] = await db
    .insert(authFailures)
    .values({ ip, failures: 1, firstAt: sql`now()`, lockedUntil: p.failures <= 1 ? lockUntil : null })
    .onConflictDoUpdate({
      target: authFailures.ip,
      set: {
        failures,
        firstAt: sql`case when ${stale} then now() else ${authFailures.firstAt} end`,
        lockedUntil: sql`case when ${failures} >= ${p.failures} then ${lockUntil} else ${authFailures.lockedUntil} end`,
      },
    })
    .returning({ lockedUntil: authFailures.lockedUntil });
  return row?.lockedUntil && row.lockedUntil.getTime() > Date.now() ? row.lockedUntil : undefined;
}
