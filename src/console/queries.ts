// What the console pages read: the queue filtered and searched (paged by delivery id, newest
// first, so no page counts rows it does not show), counts per status, and the last 24 hours.
import { and, count, desc, eq, gte, lt, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { type DeliveryStatus, deliveries, events, messages } from "../db/schema.ts";

export interface QueueFilter {
  status?: DeliveryStatus;
  /** Our message id or its Message-ID header (with or without the angle brackets). */
  q?: string;
  rcpt?: string;
  sender?: string;
  /** The recipient's domain. */
  domain?: string;
  /** Continue after this delivery id. */
  before?: number;
}

export const PAGE_SIZE = 50;

export async function searchQueue(db: Db, f: QueueFilter) {
  const q = f.q?.trim();
  const rows = await db
    .select({
      deliveryId: deliveries.id,
      messageId: deliveries.messageId,
      rcpt: deliveries.rcpt,
      status: deliveries.status,
      attempts: deliveries.attempts,
      nextAttemptAt: deliveries.nextAttemptAt,
      lastReply: deliveries.lastReply,
      from: messages.mailFrom,
      subject: messages.subject,
      receivedAt: messages.receivedAt,
    })
    .from(deliveries)
    .innerJoin(messages, eq(messages.id, deliveries.messageId))
    .where(
      and(
        f.status ? eq(deliveries.status, f.status) : undefined,
        q
          ? or(
              eq(messages.id, q),
              eq(messages.messageIdHeader, q.startsWith("<") ? q : `<${q}>`),
              eq(messages.messageIdHeader, q),
            )
          : undefined,
        f.rcpt ? eq(deliveries.rcpt, f.rcpt.toLowerCase()) : undefined,
        f.sender ? eq(messages.mailFrom, f.sender.toLowerCase()) : undefined,
        f.domain
          ? sql`${deliveries.rcpt} like ${`%@${f.domain.toLowerCase().replace(/[\\%_]/g, "\\$&")}`}`
          : undefined,
        f.before !== undefined ? lt(deliveries.id, f.before) : undefined,
      ),
    )
    .orderBy(desc(deliveries.id))
    .limit(PAGE_SIZE + 1);
  return { rows: rows.slice(0, PAGE_SIZE), more: rows.length > PAGE_SIZE };
}

export async function statusCounts(db: Db): Promise<Map<string, number>> {
  const rows = await db
    .select({ status: deliveries.status, n: count() })
    .from(deliveries)
    .groupBy(deliveries.status);
  return new Map(rows.map((r) => [r.status, r.n]));
}

export interface HourCounts {
  hour: Date;
  received: number;
  delivered: number;
  deferred: number;
  bounced: number;
}

/** Messages received and delivery outcomes per hour over the last 24 hours, oldest first. */
export async function lastDay(db: Db, now = new Date()): Promise<HourCounts[]> {
  const firstHour = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000 - 23 * 3_600_000);
  const hourOf = (column: typeof messages.receivedAt | typeof events.at) =>
    sql<number>`extract(epoch from date_trunc('hour', ${column}))::float8`.mapWith(Number);
  const received = await db
    .select({ hour: hourOf(messages.receivedAt), n: count() })
    .from(messages)
    .where(gte(messages.receivedAt, firstHour))
    .groupBy(sql`1`);
  const outcomes = await db
    .select({ hour: hourOf(events.at), type: events.type, n: count() })
    .from(events)
    .where(gte(events.at, firstHour))
    .groupBy(sql`1`, events.type);
  const hours: HourCounts[] = Array.from({ length: 24 }, (_, i) => ({
    hour: new Date(firstHour.getTime() + i * 3_600_000),
    received: 0,
    delivered: 0,
    deferred: 0,
    bounced: 0,
  }));
  const slot = (epochSeconds: number) =>
    hours[Math.round((epochSeconds * 1000 - firstHour.getTime()) / 3_600_000)];
  for (const r of received) {
    const h = slot(r.hour);
    if (h) h.received += r.n;
  }
  for (const r of outcomes) {
    const h = slot(r.hour);
    if (h && (r.type === "delivered" || r.type === "deferred" || r.type === "bounced")) h[r.type] += r.n;
  }
  return hours;
}
