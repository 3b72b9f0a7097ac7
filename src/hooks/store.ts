// Event webhooks in the database: the hooks, the event stream each reads past its cursor (a hook
// is held by one node at a time, under a lease), and the copies a receiver refused, retried
// under leases of their own.
import { and, asc, desc, eq, inArray, isNull, lt, lte, notInArray, or, sql } from "drizzle-orm";
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

/** True when some hook has events past its cursor. Read-only: an idle gateway writes nothing. */
export async function streamsWaiting(db: Db): Promise<boolean> {
  const [row] = await db
    .select({ one: sql`1` })
    .from(hooks)
    .where(
      sql`exists (select 1 from ${events} e where (e.tx, e.id) > (${hooks.cursorTx}, ${hooks.cursorId})
        and e.tx < pg_snapshot_xmin(pg_current_snapshot()))`,
    )
    .limit(1);
  return row !== undefined;
}

/**
 * Leases the hooks no node holds (a lapsed lease included), and those `owner` holds but is not
 * sending to (`busy` are): a batch whose record a database outage cut off goes again at once.
 */
export async function claimHooks(
  db: Db,
  owner: string,
  leaseSeconds: number,
  busy: readonly number[] = [],
): Promise<Hook[]> {
  const free = db
    .select({ id: hooks.id })
    .from(hooks)
    .where(
      and(
        or(isNull(hooks.leaseUntil), lt(hooks.leaseUntil, sql`now()`), eq(hooks.leaseOwner, owner)),
        busy.length > 0 ? notInArray(hooks.id, [...busy]) : undefined,
      ),
    )
    .for("update", { skipLocked: true });
  return db
    .update(hooks)
    .set({ leaseOwner: owner, leaseUntil: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(inArray(hooks.id, free))
    .returning();
}

/** Gives `owner`'s lease of the hook back: a run that ends without a last record (stopped, failed). */
export async function releaseHook(db: Db, owner: string, id: number): Promise<void> {
  await db
    .update(hooks)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(and(eq(hooks.id, id), eq(hooks.leaseOwner, owner)));
}

/** A position in the event stream: every event at or before it is done. */
export interface StreamCursor {
  tx: string;
  id: number;
}

/**
 * Up to `limit` of the hook's events past its cursor, oldest first, and the cursor to store once
 * they are sent. Only events of finished transactions are read (below the horizon, the oldest one
 * still running); when fewer than `limit` are there, everything below the horizon is done.
 */
export async function readStream(
  db: Db,
  hook: Hook,
  limit: number,
): Promise<{ events: HookEvent[]; next: StreamCursor }> {
  const [row] = await db
    .select({ horizon: sql<string>`pg_snapshot_xmin(pg_current_snapshot())::text` })
    .from(hooks)
    .where(eq(hooks.id, hook.id));
  if (!row) return { events: [], next: { tx: hook.cursorTx, id: hook.cursorId } };
  const { horizon } = row;
  const ofDomain = (column: typeof events.mailFrom | typeof events.rcpt) =>
    sql`lower(substring(${column} from '@([^@]*)$')) = ${hook.domain}`;
  const rows = await db
    .select()
    .from(events)
    .where(
      and(
        sql`(${events.tx}, ${events.id}) > (${hook.cursorTx}::xid8, ${hook.cursorId})`,
        sql`${events.tx} < ${horizon}::xid8`,
        hook.events ? inArray(events.type, hook.events as EventType[]) : undefined,
        hook.domain ? or(ofDomain(events.mailFrom), ofDomain(events.rcpt)) : undefined,
      ),
    )
    .orderBy(asc(events.tx), asc(events.id))
    .limit(limit);
  const last = rows.at(-1);
  return {
    events: rows,
    next: rows.length === limit && last ? { tx: last.tx, id: last.id } : { tx: horizon, id: 0 },
  };
}

/** What one POST of an event to a hook came to. */
export interface PostResult {
  ok: boolean;
  /** "HTTP 200 OK", "HTTP 500 …", "timed out", a connection error. */
  reply: string;
}

/**
 * Records a batch of the hook's stream: the cursor moves past it, the lease is given back (or
 * renewed for `renewLeaseSeconds`, more to send), and each refused event becomes a copy to retry;
 * in one transaction, so a crash before it sends the batch again (at least once, the same
 * webhook-ids) and loses none. Nothing if the lease was lost: `held` is false.
 */
export async function recordStream(
  db: Db,
  owner: string,
  hook: Hook,
  next: StreamCursor,
  sent: readonly { event: HookEvent; result: PostResult }[],
  policy: RetryPolicy,
  o: { renewLeaseSeconds?: number; now?: Date } = {},
): Promise<{ delivered: number; retried: number; held: boolean }> {
  const now = o.now ?? new Date();
  const refused = sent.filter((s) => !s.result.ok);
  const lastFailure = refused.at(-1)?.result.reply;
  const lease =
    o.renewLeaseSeconds === undefined
      ? { leaseOwner: null, leaseUntil: null }
      : { leaseUntil: sql`now() + make_interval(secs => ${o.renewLeaseSeconds})` };
  const held = await db.transaction(async (tx) => {
    const held = await tx
      .update(hooks)
      .set({
        cursorTx: next.tx,
        cursorId: next.id,
        ...lease,
        ...(refused.length < sent.length ? { lastDeliveredAt: now } : {}),
        ...(lastFailure === undefined ? {} : { lastFailedAt: now, lastFailure }),
      })
      .where(and(eq(hooks.id, hook.id), eq(hooks.leaseOwner, owner)))
      .returning({ id: hooks.id });
    if (held.length === 0) return false;
    if (refused.length === 0) return true;
    await tx.insert(hookDeliveries).values(
      refused.map((s) => {
        const retry = nextAttempt(1, now, now, policy);
        return {
          hookId: hook.id,
          eventId: s.event.id,
          attempts: 1,
          lastReply: s.result.reply,
          createdAt: now,
          ...(retry.kind === "retry"
            ? { nextAttemptAt: retry.at }
            : { status: "failed" as const, doneAt: now }),
        };
      }),
    );
    return true;
  });
  return { delivered: sent.length - refused.length, retried: refused.length, held };
}

/** A copy to POST again, leased to us. */
export interface ClaimedHookDelivery {
  id: number;
  attempts: number;
  createdAt: Date;
  hook: Pick<Hook, "id" | "url" | "secret">;
  event: HookEvent;
}

/** Copies waiting on a retry that are due and that no node holds (a lapsed lease included). */
const dueCopy = () =>
  and(
    eq(hookDeliveries.status, "pending"),
    lte(hookDeliveries.nextAttemptAt, sql`now()`),
    or(isNull(hookDeliveries.leaseUntil), lt(hookDeliveries.leaseUntil, sql`now()`)),
  );

/** The hooks that have due copies no node holds. */
export async function hooksWithDueCopies(db: Db): Promise<number[]> {
  const rows = await db.selectDistinct({ id: hookDeliveries.hookId }).from(hookDeliveries).where(dueCopy());
  return rows.map((r) => r.id);
}

/** Leases up to `limit` of the hook's due copies, oldest due first. */
export async function claimHookDeliveries(
  db: Db,
  owner: string,
  hookId: number,
  limit: number,
  leaseSeconds: number,
): Promise<ClaimedHookDelivery[]> {
  const due = db
    .select({ id: hookDeliveries.id })
    .from(hookDeliveries)
    .where(and(eq(hookDeliveries.hookId, hookId), dueCopy()))
    .orderBy(asc(hookDeliveries.nextAttemptAt))
    .limit(limit)
    .for("update", { skipLocked: true });
  const claimed = await db
    .update(hookDeliveries)
    .set({ leaseOwner: owner, leaseUntil: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(inArray(hookDeliveries.id, due))
    .returning({ id: hookDeliveries.id });
  if (claimed.length === 0) return [];
  return db
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
}

/** What one POST of a retried copy came to. */
export interface HookAttempt extends PostResult {
  delivery: ClaimedHookDelivery;
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

/** The event copies a receiver refused (the ones it took leave no row), newest first. */
export async function recentHookFailures(db: Db, limit: number) {
  return db.select().from(hookDeliveries).orderBy(desc(hookDeliveries.id)).limit(limit);
}
