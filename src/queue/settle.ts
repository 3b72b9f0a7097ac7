// Recording what an attempt did: one attempt row per try, the delivery's new state, and the
// events a sender may be told about. One transaction per batch of results, and any DSNs the
// events produce are written in that same transaction, so a crash never loses one half.
import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { attempts, type DeliveryStatus, deliveries, events, PENDING_STATUSES } from "../db/schema.ts";
import type { ClaimedDelivery, QueuedMessage } from "./claim.ts";
import { type NewMessage, writeMessages } from "./enqueue.ts";
import { settledEvents } from "./events.ts";
import { type AttemptOutcome, nextAttempt, nextAttemptAt, type RetryPolicy } from "./retry.ts";
import { suppressionsFrom, writeSuppressions } from "./suppressions.ts";

export interface AttemptReport {
  deliveryId: number;
  outcome: AttemptOutcome;
  /** The remote reply ("550 5.1.1 no such user") or what went wrong ("connect: ECONNREFUSED"). */
  reply: string;
  /** Enhanced status for a DSN: from the reply, or chosen for a local failure ("4.4.1"). */
  status: string;
  /** The host that answered, when one did. */
  remoteMta: string | null;
  durationMs: number;
  /** The connection was encrypted (SMTP couriers say; undefined where it does not apply). */
  tls?: boolean;
  /** Deferred until then rather than on the backoff (a shaped or paused destination). */
  retryAt?: Date | undefined;
}

export type DeliveryEvent = "delivered" | "failed" | "delayed";

export interface SettledDelivery {
  delivery: ClaimedDelivery;
  message: QueuedMessage;
  report: AttemptReport;
  event: DeliveryEvent | undefined;
  nextAttemptAt: Date | undefined;
  /** Bounced because the queue lifetime ended, not because of a permanent failure. */
  expired?: boolean;
}

export interface SettlePolicy extends RetryPolicy {
  delayWarningSeconds: number;
}

/**
 * Turns settled deliveries into DSN messages (may be none), each with the deliveries it reports
 * on. Called before the settling transaction opens: it may read the database (PGlite runs one
 * transaction at a time, so a read from inside one would wait on itself).
 */
export type DsnWriter = (settled: SettledDelivery[]) => Promise<{ message: NewMessage; about: number[] }[]>;

/** The state a delivery moves to after an attempt: pure, from the claim, the report and the clock. */
export function decide(
  delivery: ClaimedDelivery,
  message: QueuedMessage,
  report: AttemptReport,
  policy: SettlePolicy,
  now: Date,
  random: () => number = Math.random,
): SettledDelivery & { status: DeliveryStatus; warn: boolean } {
  const base = { delivery, message, report, warn: false };
  if (report.outcome === "delivered")
    return { ...base, status: "delivered", event: "delivered", nextAttemptAt: undefined };
  if (report.outcome === "bounced")
    return { ...base, status: "bounced", event: "failed", nextAttemptAt: undefined };
  const next = report.retryAt
    ? nextAttemptAt(report.retryAt, delivery.createdAt, now, policy)
    : nextAttempt(delivery.attempts + 1, delivery.createdAt, now, policy, random);
  if (next.kind === "expired") {
    const expired: AttemptReport = {
      ...report,
      reply: `${report.reply} (gave up: queue lifetime of ${policy.lifetimeSeconds} s ended)`,
      status: report.status.startsWith("4") ? `5${report.status.slice(1)}` : "5.4.7",
    };
    return {
      ...base,
      report: expired,
      status: "bounced",
      event: "failed",
      nextAttemptAt: undefined,
      expired: true,
    };
  }
  // One delay warning per delivery, once it has waited long enough.
  const warn =
    delivery.warnedAt === null &&
    now.getTime() - delivery.createdAt.getTime() >= policy.delayWarningSeconds * 1000;
  return { ...base, warn, status: "deferred", event: warn ? "delayed" : undefined, nextAttemptAt: next.at };
}

/**
 * Records a batch of attempts made under `owner`'s lease. A delivery whose lease was lost
 * meanwhile (taken over after it ran out, or its message removed) is left as the new holder
 * has it: neither its state, nor an attempt row, nor a DSN is written for it here.
 */
export async function settle(
  db: Db,
  owner: string,
  jobs: { delivery: ClaimedDelivery; message: QueuedMessage; report: AttemptReport }[],
  policy: SettlePolicy,
  dsns: DsnWriter,
  now = new Date(),
  random: () => number = Math.random,
): Promise<SettledDelivery[]> {
  if (jobs.length === 0) return [];
  const decided = jobs.map((j) => decide(j.delivery, j.message, j.report, policy, now, random));
  const notices = await dsns(decided);
  return db.transaction(async (tx) => {
    const kept: typeof decided = [];
    for (const d of decided) {
      const updated = await tx
        .update(deliveries)
        .set({
          attempts: d.delivery.attempts + 1,
          lastReply: d.report.reply,
          leaseOwner: null,
          leaseUntil: null,
          status: d.status,
          ...(d.status === "delivered" ? { deliveredAt: now } : {}),
          ...(d.nextAttemptAt ? { nextAttemptAt: d.nextAttemptAt } : {}),
          ...(d.warn ? { warnedAt: now } : {}),
        })
        .where(
          and(
            eq(deliveries.id, d.delivery.id),
            eq(deliveries.leaseOwner, owner),
            inArray(deliveries.status, PENDING_STATUSES),
          ),
        )
        .returning({ id: deliveries.id });
      if (updated.length > 0) kept.push(d);
    }
    if (kept.length > 0) {
      await tx.insert(attempts).values(
        kept.map((d) => ({
          deliveryId: d.delivery.id,
          at: now,
          durationMs: Math.round(d.report.durationMs),
          host: d.report.remoteMta,
          reply: d.report.reply,
          outcome: d.report.outcome,
        })),
      );
    }
    if (kept.length > 0) await tx.insert(events).values(settledEvents(kept, now));
    await writeSuppressions(tx, suppressionsFrom(kept, now));
    const keptIds = new Set(kept.map((d) => d.delivery.id));
    const written = notices.filter((n) => n.about.every((id) => keptIds.has(id))).map((n) => n.message);
    if (written.length > 0) await writeMessages(tx, written);
    return kept;
  });
}
