// The rows of the event outbox (db/schema.ts `events`), built from the changes they describe:
// messages written (accepted, or delivered when a mailbox keeps them) and attempts settled.
// Pure: the writers put these rows in the same statement or transaction as the change.
import { and, asc, eq, gt } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { type EventType, events } from "../db/schema.ts";
import { classifyOutcome, readReply } from "../delivery/bounce-class.ts";
import { keptOnWrite, type NewMessage } from "./enqueue.ts";
import type { AttemptReport, SettledDelivery } from "./settle.ts";

export type NewEvent = typeof events.$inferInsert;

/**
 * `accepted` for every recipient of a message we took (and `delivered` for a mailbox's), none for
 * our own DSNs; and what a delivery report that came in says of mail we sent.
 */
export function writtenEvents(batch: readonly NewMessage[], at: Date): NewEvent[] {
  return batch.flatMap((m) => [
    ...(m.reported?.events ?? []),
    ...(m.direction === "dsn"
      ? []
      : m.deliveries.flatMap((d): NewEvent[] => {
          const base = {
            at,
            messageId: m.id,
            messageIdHeader: m.messageIdHeader,
            mailFrom: m.mailFrom,
            rcpt: d.rcpt,
          };
          const accepted: NewEvent = { ...base, type: "accepted" };
          return keptOnWrite(d.target) ? [accepted, { ...base, type: "delivered" as const }] : [accepted];
        })),
  ]);
}

/** One event per settled attempt: delivered, deferred, bounced, or expired (the queue lifetime ended). */
export function settledEvents(settled: readonly SettledDelivery[], at: Date): NewEvent[] {
  return settled.map((s) => {
    const { report } = s;
    const reply = readReply(report.reply);
    const type =
      report.outcome === "delivered"
        ? "delivered"
        : s.nextAttemptAt !== undefined
          ? "deferred"
          : s.expired
            ? "expired"
            : "bounced";
    return {
      type,
      at,
      messageId: s.message.id,
      messageIdHeader: s.message.messageIdHeader,
      mailFrom: s.message.mailFrom,
      rcpt: s.delivery.rcpt,
      attempt: s.delivery.attempts + 1,
      mx: report.remoteMta,
      replyCode: reply.code || null,
      replyEnhanced: reply.enhanced ?? report.status,
      replyText: reply.text,
      class: type === "delivered" ? null : classOfReport(report),
      tls: report.tls ?? null,
    };
  });
}

/** The bounce class of an attempt's outcome. */
export function classOfReport(report: AttemptReport) {
  const reply = readReply(report.reply);
  return classifyOutcome({
    from: report.remoteMta ? "remote" : "local",
    code: reply.code,
    enhanced: reply.enhanced ?? report.status,
    text: reply.text,
  });
}

/** An event as the API shows it (CONTRACT: events). */
export interface EventView {
  id: number;
  type: EventType;
  at: string;
  messageId: string | null;
  messageIdHeader: string | null;
  mailFrom: string;
  rcpt: string;
  attempt: number;
  mx: string | null;
  reply: { code: number | null; enhanced: string | null; text: string } | null;
  class: string | null;
  tls: boolean | null;
}

/** Events after the one with id `since` (0: from the start), oldest first. */
export async function listEvents(
  db: Db,
  o: { since: number; limit: number; type?: EventType; messageId?: string },
): Promise<EventView[]> {
  const rows = await db
    .select()
    .from(events)
    .where(
      and(
        gt(events.id, o.since),
        o.type ? eq(events.type, o.type) : undefined,
        o.messageId ? eq(events.messageId, o.messageId) : undefined,
      ),
    )
    .orderBy(asc(events.id))
    .limit(o.limit);
  return rows.map(eventView);
}

export function eventView(r: typeof events.$inferSelect): EventView {
  return {
    id: r.id,
    type: r.type,
    at: r.at.toISOString(),
    messageId: r.messageId,
    messageIdHeader: r.messageIdHeader,
    mailFrom: r.mailFrom,
    rcpt: r.rcpt,
    attempt: r.attempt,
    mx: r.mx,
    reply: r.replyText === null ? null : { code: r.replyCode, enhanced: r.replyEnhanced, text: r.replyText },
    class: r.class,
    tls: r.tls,
  };
}
