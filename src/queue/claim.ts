// Taking due deliveries for this process: FOR UPDATE SKIP LOCKED so that instances sharing the
// database take disjoint rows, and a lease so that a dead instance's rows come back when it ends.
import { and, asc, eq, inArray, isNull, lt, lte, notInArray, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { attempts, deliveries, messages, PENDING_STATUSES } from "../db/schema.ts";
import { parseTarget, type Target } from "../domains/targets.ts";
import { bodyLength, readBody, smallBody } from "./bodies.ts";
import { ownerGone } from "./liveness.ts";

/**
 * A claimed row's target. One that does not parse (the row was edited by hand) is carried as it
 * is, so that its delivery is deferred with the reason, not lost and not crashing the claim.
 */
export type ClaimedTarget = Target | { kind: "unreadable"; text: string; problem: string };

export function readStoredTarget(text: string): ClaimedTarget {
  try {
    return parseTarget(text);
  } catch (err) {
    return { kind: "unreadable", text, problem: (err as Error).message };
  }
}

export interface ClaimedDelivery {
  id: number;
  messageId: string;
  rcpt: string;
  orcpt: string | null;
  notify: string | null;
  target: ClaimedTarget;
  attempts: number;
  createdAt: Date;
  warnedAt: Date | null;
  /** Its message's size, what the scheduler budgets before loading it. */
  size: number;
}

export interface QueuedMessage {
  id: string;
  mailFrom: string;
  raw: Uint8Array;
  envid: string | null;
  ret: string | null;
  receivedAt: Date;
  direction: string;
  subject: string | null;
  messageIdHeader: string | null;
  authResults: unknown;
}

/**
 * Leases up to `limit` due deliveries for `owner`, oldest due first: those nobody holds, those
 * whose lease ran out, and (with `takeOver`) those whose holder no longer proves it is alive.
 */
export async function claimDue(
  db: Db,
  owner: string,
  limit: number,
  leaseSeconds: number,
  takeOver = true,
): Promise<ClaimedDelivery[]> {
  const due = db
    .select({ id: deliveries.id })
    .from(deliveries)
    .where(
      and(
        inArray(deliveries.status, PENDING_STATUSES),
        lte(deliveries.nextAttemptAt, sql`now()`),
        or(
          isNull(deliveries.leaseUntil),
          lt(deliveries.leaseUntil, sql`now()`),
          takeOver ? ownerGone() : undefined,
        ),
      ),
    )
    .orderBy(asc(deliveries.nextAttemptAt))
    .limit(limit)
    .for("update", { skipLocked: true });
  const rows = await db
    .update(deliveries)
    .set({ leaseOwner: owner, leaseUntil: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(inArray(deliveries.id, due))
    .returning({
      id: deliveries.id,
      messageId: deliveries.messageId,
      rcpt: deliveries.rcpt,
      orcpt: deliveries.orcpt,
      notify: deliveries.notify,
      target: deliveries.target,
      attempts: deliveries.attempts,
      createdAt: deliveries.createdAt,
      warnedAt: deliveries.warnedAt,
      due: deliveries.nextAttemptAt,
      // in the claim's own statement: one round trip fewer per claim than asking after it
      // qualified by hand: drizzle writes RETURNING's columns bare, and a bare name would be
      // read as the subquery's own column if messages ever had one of that name
      size: sql<number>`(select m.size from messages m where m.id = "deliveries"."message_id")`,
    });
  // RETURNING comes in no particular order (a hash of the ids, as planned): due order again
  return rows
    .sort((a, b) => a.due.getTime() - b.due.getTime() || a.id - b.id)
    .map((r) => ({ ...r, target: readStoredTarget(r.target) }));
}

/** When the next pending delivery not leased now comes due, if any is waiting. */
export async function nextDueAt(db: Db): Promise<Date | undefined> {
  const [row] = await db
    .select({ at: deliveries.nextAttemptAt })
    .from(deliveries)
    .where(
      and(
        inArray(deliveries.status, PENDING_STATUSES),
        or(isNull(deliveries.leaseUntil), lt(deliveries.leaseUntil, sql`now()`)),
      ),
    )
    .orderBy(asc(deliveries.nextAttemptAt))
    .limit(1);
  return row?.at;
}

export async function loadMessages(db: Db, ids: string[]): Promise<Map<string, QueuedMessage>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .select({
      id: messages.id,
      mailFrom: messages.mailFrom,
      raw: smallBody,
      length: bodyLength,
      envid: messages.envid,
      ret: messages.ret,
      receivedAt: messages.receivedAt,
      direction: messages.direction,
      subject: messages.subject,
      messageIdHeader: messages.messageIdHeader,
      authResults: messages.authResults,
    })
    .from(messages)
    .where(inArray(messages.id, ids));
  const loaded = new Map<string, QueuedMessage>();
  for (const { raw, length, ...r } of rows) {
    const body = raw ?? (await readBody(db, r.id, length));
    if (body) loaded.set(r.id, { ...r, raw: body });
  }
  return loaded;
}

/**
 * Extends `owner`'s leases on deliveries it holds, for `leaseSeconds` from now, and says which of
 * `ids` are no longer its own: settled, removed, or taken over by another instance after the
 * lease ran out. Rows locked at this moment (a settle of ours in flight) are skipped, not waited
 * for: waiting could deadlock with that settle, which locks its rows in another order.
 */
export async function renewLeases(
  db: Db,
  owner: string,
  ids: number[],
  leaseSeconds: number,
): Promise<Set<number>> {
  if (ids.length === 0) return new Set();
  const ours = and(
    eq(deliveries.leaseOwner, owner),
    inArray(deliveries.id, ids),
    inArray(deliveries.status, PENDING_STATUSES),
  );
  const unlocked = db
    .select({ id: deliveries.id })
    .from(deliveries)
    .where(ours)
    .orderBy(asc(deliveries.id))
    .for("update", { skipLocked: true });
  await db
    .update(deliveries)
    .set({ leaseUntil: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(inArray(deliveries.id, unlocked));
  const held = await db.select({ id: deliveries.id }).from(deliveries).where(ours);
  const still = new Set(held.map((r) => r.id));
  return new Set(ids.filter((id) => !still.has(id)));
}

/**
 * Puts back deliveries whose message could not be read, as an attempt that failed for now: an
 * attempt row saying why and a retry at `retryAt`, so that a damaged row neither stays claimed
 * nor blocks its destination. It stays deferred, in the queue for an operator to see, until it
 * can be read again (no DSN can be made without the message).
 */
export async function deferUnreadable(db: Db, owner: string, ids: number[], retryAt: Date): Promise<void> {
  if (ids.length === 0) return;
  const reply = "local error: the message cannot be read from the database";
  await db.transaction(async (tx) => {
    const rows = await tx
      .update(deliveries)
      .set({
        status: "deferred",
        attempts: sql`${deliveries.attempts} + 1`,
        nextAttemptAt: retryAt,
        lastReply: reply,
        leaseOwner: null,
        leaseUntil: null,
      })
      .where(and(eq(deliveries.leaseOwner, owner), inArray(deliveries.id, ids)))
      .returning({ id: deliveries.id });
    if (rows.length === 0) return;
    await tx
      .insert(attempts)
      .values(rows.map((r) => ({ deliveryId: r.id, durationMs: 0, reply, outcome: "deferred" })));
  });
}

/**
 * Gives back `owner`'s leases on pending deliveries it does not hold. A claim whose answer was
 * lost with its connection may have leased rows nobody here knows of; as our own, they would
 * wait for the whole lease, since we are alive.
 */
export async function releaseUnheld(db: Db, owner: string, held: number[]): Promise<void> {
  await db
    .update(deliveries)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(
      and(
        eq(deliveries.leaseOwner, owner),
        inArray(deliveries.status, PENDING_STATUSES),
        held.length > 0 ? notInArray(deliveries.id, held) : undefined,
      ),
    );
}

/** Gives leased deliveries back at once (on a graceful stop) instead of waiting for the lease. */
export async function releaseLeases(db: Db, owner: string, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(deliveries)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(and(eq(deliveries.leaseOwner, owner), inArray(deliveries.id, ids)));
}
