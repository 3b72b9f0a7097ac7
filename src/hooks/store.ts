// Event webhooks in the database: the hooks themselves, and the copies of events they are owed
// (made by the fan-out trigger of migration 0006), claimed under a lease so one node sends each.
import { and, asc, eq, inArray, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { type EventType, events, hookDeliveries, hooks } from "../db/schema.ts";
import { nextAttempt, type RetryPolicy } from "../queue/retry.ts";
import { newHookSecret } from "./signature.ts";

export type Hook = typeof hooks.$inferSelect;
export type HookEvent = typeof events.$inferSelect;

/** A hook as listed: everything but its secret, which is shown once, when it is made. */
export interface HookView {
  id: number;
  url: string;
  events: EventType[] | null;
  domain: string | null;
  createdAt: string;
  lastDeliveredAt: string | null;
  lastFailedAt: string | null;
  lastFailure: string | null;
}

export function hookView(h: Hook): HookView {
  return {
    id: h.id,
    url: h.url,
    events: (h.events as EventType[] | null) ?? null,
    domain: h.domain,
    createdAt: h.createdAt.toISOString(),
    lastDeliveredAt: h.lastDeliveredAt?.toISOString() ?? null,
    lastFailedAt: h.lastFailedAt?.toISOString() ?? null,
    lastFailure: h.lastFailure,
  };
}

export async function addHook(
  db: Db,
  o: { url: URL; events: readonly EventType[] | undefined; domain: string | undefined },
): Promise<Hook> {
  const [row] = await db
    .insert(hooks)
    .values({
      url: o.url.href,
      secret: newHookSecret(),
      events: o.events ? [...o.events] : null,
      domain: o.domain?.toLowerCase() ?? null,
    })
    .returning();
  return row!;
}

export async function listHooks(db: Db): Promise<Hook[]> {
  return db.select().from(hooks).orderBy(asc(hooks.id));
}

/** True when there was one to remove; its undelivered copies go with it. */
export async function removeHook(db: Db, id: number): Promise<boolean> {
  const rows = await db.delete(hooks).where(eq(hooks.id, id)).returning({ id: hooks.id });
  return rows.length > 0;
}

/** A copy of an event owed to a hook, leased to us. */
export interface ClaimedHookDelivery {
  id: number;
  attempts: number;
  createdAt: Date;
  hook: Pick<Hook, "id" | "url" | "secret">;
  event: HookEvent;
}

/** Leases up to `limit` due copies (any node's lapsed lease included), oldest due first. */
export async function claimHookDeliveries(
  db: Db,
  owner: string,
  limit: number,
  leaseSeconds: number,
): Promise<ClaimedHookDelivery[]> {
  const due = db
    .select({ id: hookDeliveries.id })
    .from(hookDeliveries)
    .where(
      and(
        eq(hookDeliveries.status, "pending"),
        lte(hookDeliveries.nextAttemptAt, sql`now()`),
        or(isNull(hookDeliveries.leaseUntil), lt(hookDeliveries.leaseUntil, sql`now()`)),
      ),
    )
    .orderBy(asc(hookDeliveries.nextAttemptAt))
    .limit(limit)
    .for("update", { skipLocked: true });
  const claimed = await db
    .update(hookDeliveries)
    .set({ leaseOwner: owner, leaseUntil: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(inArray(hookDeliveries.id, due))
    .returning({ id: hookDeliveries.id });
  if (claimed.length === 0) return [];
  const rows = await db
    .select({
      id: hookDeliveries.id,
      attempts: hookDeliveries.attempts,
      createdAt: hookDeliveries.createdAt,
      hook: { id: hooks.id, url: hooks.url, secret: hooks.secret },
      event: events,
    })
    .from(hookDeliveries)
    .innerJoin(hooks, eq(hooks.id, hookDeliveries.hookId))
    .innerJoin(events, eq(events.id, hookDeliveries.eventId))
    .where(
      inArray(
        hookDeliveries.id,
        claimed.map((c) => c.id),
      ),
    )
    .orderBy(asc(hookDeliveries.eventId));
  return rows;
}

/** What one POST of a copy came to. */
export interface HookAttempt {
  delivery: ClaimedHookDelivery;
  ok: boolean;
  /** "HTTP 200 OK", "HTTP 500 …", "timed out", a connection error. */
  reply: string;
}

/**
 * Records the POSTs: a 2xx is done (the copy goes); anything else is tried again on the mail retry backoff until
 * the copy is `policy.lifetimeSeconds` old, then given up. A copy whose lease we lost is left alone.
 */
export async function settleHookDeliveries(
  db: Db,
  owner: string,
  results: readonly HookAttempt[],
  policy: RetryPolicy,
  now = new Date(),
): Promise<{ delivered: number; retried: number; failed: number }> {
  const counts = { delivered: 0, retried: 0, failed: 0 };
  const taken = results.filter((r) => r.ok);
  const refused = results.filter((r) => !r.ok);
  await db.transaction(async (tx) => {
    // A copy sent is done with: deleting it writes no index entries, where an update would.
    if (taken.length > 0) {
      await tx.delete(hookDeliveries).where(
        and(
          inArray(
            hookDeliveries.id,
            taken.map((r) => r.delivery.id),
          ),
          eq(hookDeliveries.leaseOwner, owner),
        ),
      );
      await tx
        .update(hooks)
        .set({ lastDeliveredAt: now })
        .where(inArray(hooks.id, [...new Set(taken.map((r) => r.delivery.hook.id))]));
      counts.delivered = taken.length;
    }
    for (const r of refused) {
      const next = nextAttempt(r.delivery.attempts + 1, r.delivery.createdAt, now, policy);
      await tx
        .update(hookDeliveries)
        .set({
          status: next.kind === "retry" ? "pending" : "failed",
          attempts: r.delivery.attempts + 1,
          lastReply: r.reply,
          leaseOwner: null,
          leaseUntil: null,
          ...(next.kind === "retry" ? { nextAttemptAt: next.at } : { doneAt: now }),
        })
        .where(and(eq(hookDeliveries.id, r.delivery.id), eq(hookDeliveries.leaseOwner, owner)));
      await tx
        .update(hooks)
        .set({ lastFailedAt: now, lastFailure: r.reply })
        .where(eq(hooks.id, r.delivery.hook.id));
      counts[next.kind === "retry" ? "retried" : "failed"]++;
    }
  });
  return counts;
}

/** When the next copy waiting on a retry is due, if any is. */
export async function nextHookDueAt(db: Db): Promise<Date | undefined> {
  const [row] = await db
    .select({ at: sql<Date>`min(${hookDeliveries.nextAttemptAt})`.mapWith(hookDeliveries.nextAttemptAt) })
    .from(hookDeliveries)
    .where(eq(hookDeliveries.status, "pending"));
  return row?.at ?? undefined;
}
