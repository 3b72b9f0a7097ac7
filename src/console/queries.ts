// What the console pages read besides the queue itself (queue/inspect.ts): counts per status,
// and the last 24 hours.
import { count, gte, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { deliveries, events, messages } from "../db/schema.ts";

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
