// Send quotas: recipients per hour per user or key, counted in the database so that every node
// shares one count. Fixed hours (as the clock has them): past the limit, the sender waits for the
// next one, and is told when that is.
import { and, eq, lt, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { sendCounts } from "../db/schema.ts";

export interface SendQuota {
  /** `user:ADDRESS` or `key:NAME`. */
  subject: string;
  /** Recipients per hour, > 0. */
  limit: number;
}

export type QuotaTake = { ok: true } | { ok: false; retryAt: Date };

/** The quota of a user or key: its own limit, else the default; none when that is 0. */
export function quotaOf(subject: string, own: number | null, defaultLimit: number): SendQuota | undefined {
  const limit = own ?? defaultLimit;
  return limit > 0 ? { subject, limit } : undefined;
}

/** The start of the hour after `now`: when a quota that is used up opens again. */
export function nextHour(now: Date): Date {
  return new Date((Math.floor(now.getTime() / 3_600_000) + 1) * 3_600_000);
}

/** Counts `n` recipients against the quota, all or none; refused when they would pass the limit. */
export async function takeQuota(db: Db, quota: SendQuota, n: number, now = new Date()): Promise<QuotaTake> {
  if (n > quota.limit) return { ok: false, retryAt: nextHour(now) };
  const hour = new Date(nextHour(now).getTime() - 3_600_000);
  const rows = await db
    .insert(sendCounts)
    .values({ subject: quota.subject, hour, count: n })
    .onConflictDoUpdate({
      target: [sendCounts.subject, sendCounts.hour],
      set: { count: sql`${sendCounts.count} + ${n}` },
      setWhere: sql`${sendCounts.count} + ${n} <= ${quota.limit}`,
    })
    .returning({ count: sendCounts.count });
  if (rows.length === 0) return { ok: false, retryAt: nextHour(now) };
  // The first count of an hour: the hours before it are over.
  if (rows[0]!.count === n)
    await db.delete(sendCounts).where(and(eq(sendCounts.subject, quota.subject), lt(sendCounts.hour, hour)));
  return { ok: true };
}
