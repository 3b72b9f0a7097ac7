// Recording what an attempt did: one attempt row per try, the delivery's new state, and the
// events a sender may be told about. One transaction per batch of results, and any DSNs the
// events produce are written in that same transaction, so a crash never loses one half.
import { inArray } from "drizzle-orm";
import type { Db, Tx } from "../db/open.ts";
import { attempts, deliveries } from "../db/schema.ts";
import type { ClaimedDelivery, QueuedMessage } from "./claim.ts";
import { type NewMessage, writeMessages } from "./enqueue.ts";
import { type AttemptOutcome, nextAttempt, type RetryPolicy } from "./retry.ts";

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
}

export type DeliveryEvent = "delivered" | "failed" | "delayed";

export interface SettledDelivery {
  delivery: ClaimedDelivery;
  message: QueuedMessage;
  report: AttemptReport;
  event: DeliveryEvent | undefined;
  nextAttemptAt: Date | undefined;
}

export interface SettlePolicy extends RetryPolicy {
  delayWarningSeconds: number;
}

/** Turns settled deliveries into DSN messages to write with them (may be none). */
export type DsnWriter = (settled: SettledDelivery[], tx: Tx) => Promise<NewMessage[]>;

export async function settle(
  db: Db,
  jobs: { delivery: ClaimedDelivery; message: QueuedMessage; report: AttemptReport }[],
  policy: SettlePolicy,
  dsns: DsnWriter,
  now = new Date(),
  random: () => number = Math.random,
): Promise<SettledDelivery[]> {
  if (jobs.length === 0) return [];
  return db.transaction(async (tx) => {
    await tx.insert(attempts).values(
      jobs.map((j) => ({
        deliveryId: j.delivery.id,
        at: now,
        durationMs: Math.round(j.report.durationMs),
        host: j.report.remoteMta,
        reply: j.report.reply,
        outcome: j.report.outcome,
      })),
    );
    const settled: SettledDelivery[] = [];
    for (const { delivery, message, report } of jobs) {
      const s = await settleOne(tx, delivery, message, report, policy, now, random);
      settled.push(s);
    }
    const notices = await dsns(settled, tx);
    if (notices.length > 0) await writeMessages(tx, notices);
    return settled;
  });
}

async function settleOne(
  tx: Tx,
  delivery: ClaimedDelivery,
  message: QueuedMessage,
  report: AttemptReport,
  policy: SettlePolicy,
  now: Date,
  random: () => number,
): Promise<SettledDelivery> {
  const attemptsMade = delivery.attempts + 1;
  const common = { attempts: attemptsMade, lastReply: report.reply, leaseOwner: null, leaseUntil: null };
  const where = inArray(deliveries.id, [delivery.id]);
  if (report.outcome === "delivered") {
    await tx
      .update(deliveries)
      .set({ ...common, status: "delivered", deliveredAt: now })
      .where(where);
    return { delivery, message, report, event: "delivered", nextAttemptAt: undefined };
  }
  if (report.outcome === "bounced") {
    await tx
      .update(deliveries)
      .set({ ...common, status: "bounced" })
      .where(where);
    return { delivery, message, report, event: "failed", nextAttemptAt: undefined };
  }
  const next = nextAttempt(attemptsMade, delivery.createdAt, now, policy, random);
  if (next.kind === "expired") {
    const expired: AttemptReport = {
      ...report,
      reply: `${report.reply} (gave up: queue lifetime of ${policy.lifetimeSeconds} s ended)`,
      status: report.status.startsWith("4") ? `5${report.status.slice(1)}` : "5.4.7",
    };
    await tx
      .update(deliveries)
      .set({ ...common, lastReply: expired.reply, status: "bounced" })
      .where(where);
    return { delivery, message, report: expired, event: "failed", nextAttemptAt: undefined };
  }
  // One delay warning per delivery, once it has waited long enough.
  const warn =
    delivery.warnedAt === null &&
    now.getTime() - delivery.createdAt.getTime() >= policy.delayWarningSeconds * 1000;
  await tx
    .update(deliveries)
    .set({ ...common, status: "deferred", nextAttemptAt: next.at, ...(warn ? { warnedAt: now } : {}) })
    .where(where);
  return { delivery, message, report, event: warn ? "delayed" : undefined, nextAttemptAt: next.at };
}
