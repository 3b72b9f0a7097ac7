// Recording what an attempt did: one attempt row per try, the delivery's new state, and the
// events a sender may be told about. One statement per batch of results, and any DSNs the events
// produce are written in the same transaction, so a crash never loses one half.
import { type Db, rowsOf, type Tx } from "../db/open.ts";
import {
  attempts,
  type DeliveryStatus,
  events,
  PENDING_STATUSES,
  sqlStringList,
  suppressions,
} from "../db/schema.ts";
import { arrayLiteral, flatStatement, UnnestedInsert } from "../db/unnest.ts";
import type { ClaimedDelivery, QueuedMessage } from "./claim.ts";
import { EVENT_COLUMNS, type NewMessage, SUPPRESSION_COLUMNS, writeMessages } from "./enqueue.ts";
import { settledEvents } from "./events.ts";
import { type AttemptOutcome, nextAttempt, nextAttemptAt, type RetryPolicy } from "./retry.ts";
import { suppressionsFrom } from "./suppressions.ts";

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
  const record = async (db: Db | Tx) => {
    const keptIds = new Set(await recordAttempts(db, owner, decided, now));
    return { kept: decided.filter((d) => keptIds.has(d.delivery.id)), keptIds };
  };
  // Alone, the one statement is its own transaction; DSNs follow it in one when there are any.
  if (notices.length === 0) return (await record(db)).kept;
  return db.transaction(async (tx) => {
    const { kept, keptIds } = await record(tx);
    const written = notices.filter((n) => n.about.every((id) => keptIds.has(id))).map((n) => n.message);
    if (written.length > 0) await writeMessages(tx, written);
    return kept;
  });
}

/**
 * One statement (data-modifying CTEs, one round trip, the same text for any batch so it is
 * prepared once): each delivery still under `owner`'s lease moves to its decided state, and only
 * for those an attempt row, an event and any suppression are written. Returns their ids.
 */
async function recordAttempts(
  db: Db | Tx,
  owner: string,
  decided: ReturnType<typeof decide>[],
  now: Date,
): Promise<number[]> {
  const ids = decided.map((d) => d.delivery.id);
  const at = now.toISOString();
  const suppressed = decided.flatMap((d) =>
    suppressionsFrom([d], now).map((row) => ({ id: d.delivery.id, row })),
  );
  const result: unknown = await db.execute(
    flatStatement([
      "with v as (select * from unnest(",
      { value: arrayLiteral(ids) },
      "::bigint[], ",
      { value: arrayLiteral(decided.map((d) => d.delivery.attempts + 1)) },
      "::int[], ",
      { value: arrayLiteral(decided.map((d) => d.status)) },
      "::text[], ",
      { value: arrayLiteral(decided.map((d) => d.report.reply)) },
      "::text[], ",
      { value: arrayLiteral(decided.map((d) => d.nextAttemptAt ?? null)) },
      "::timestamptz[], ",
      { value: arrayLiteral(decided.map((d) => d.warn)) },
      "::bool[]) as v(id, attempts, status, reply, next_at, warn)), kept as (update deliveries d set attempts = v.attempts, last_reply = v.reply, lease_owner = null, lease_until = null, status = v.status, delivered_at = case when v.status = 'delivered' then ",
      { value: at },
      "::timestamptz else d.delivered_at end, next_attempt_at = coalesce(v.next_at, d.next_attempt_at), warned_at = case when v.warn then ",
      { value: at },
      "::timestamptz else d.warned_at end from v where d.id = v.id and d.lease_owner = ",
      { value: owner },
      ` and d.status in (${sqlStringList(PENDING_STATUSES)}) returning d.id), a as (`,
      ...attemptInsert.parts(
        decided.map((d) => ({
          deliveryId: d.delivery.id,
          at: now,
          durationMs: Math.round(d.report.durationMs),
          host: d.report.remoteMta,
          reply: d.report.reply,
          outcome: d.report.outcome,
        })),
        ids,
      ),
      "), e as (",
      ...keptEventInsert.parts(settledEvents(decided, now), ids),
      "), s as (",
      ...keptSuppressionInsert.parts(
        suppressed.map((x) => x.row),
        suppressed.map((x) => x.id),
      ),
      " on conflict do nothing) select id from kept",
    ]),
  );
  return rowsOf<{ id: string | number }>(result).map((r) => Number(r.id));
}

const KEPT = { type: "bigint", where: "k in (select id from kept)" };
const attemptInsert = new UnnestedInsert(
  attempts,
  ["deliveryId", "at", "durationMs", "host", "reply", "outcome"],
  KEPT,
);
const keptEventInsert = new UnnestedInsert(events, EVENT_COLUMNS, KEPT);
const keptSuppressionInsert = new UnnestedInsert(suppressions, SUPPRESSION_COLUMNS, KEPT);
