// The queue as an operator sees it: a line per recipient delivery, one message with its whole
// history ("why is it stuck"), and the two actions on it: retry now, remove.
import { and, asc, count, desc, eq, inArray, like, lt, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { attempts, type DeliveryStatus, deliveries, messages, PENDING_STATUSES } from "../db/schema.ts";
import { readHeaders } from "../mail/headers.ts";

export interface QueueEntry {
  messageId: string;
  deliveryId: number;
  from: string;
  rcpt: string;
  target: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastReply: string | null;
  receivedAt: string;
  subject: string | null;
}

export interface QueuePage {
  entries: QueueEntry[];
  /** The `cursor` for the next page (the last delivery id seen), absent on the last page. */
  nextCursor?: number;
}

/** What the queue may be narrowed to (the API filters by status; the console by all of them). */
export interface QueueFilter {
  status?: DeliveryStatus;
  /** Our message id or its Message-ID header (with or without the angle brackets). */
  q?: string;
  rcpt?: string;
  sender?: string;
  /** The recipient's domain. */
  domain?: string;
}

/** Deliveries, newest first, narrowed by `filter`; `cursor` continues after a delivery id. */
export async function listQueue(
  db: Db,
  o: QueueFilter & { limit: number; cursor?: number },
): Promise<QueuePage> {
  const q = o.q?.trim();
  const rows = await db
    .select({
      messageId: deliveries.messageId,
      deliveryId: deliveries.id,
      from: messages.mailFrom,
      rcpt: deliveries.rcpt,
      target: deliveries.target,
      status: deliveries.status,
      attempts: deliveries.attempts,
      nextAttemptAt: deliveries.nextAttemptAt,
      lastReply: deliveries.lastReply,
      receivedAt: messages.receivedAt,
      subject: messages.subject,
    })
    .from(deliveries)
    .innerJoin(messages, eq(messages.id, deliveries.messageId))
    .where(
      and(
        o.status ? eq(deliveries.status, o.status) : undefined,
        q
          ? or(
              eq(messages.id, q),
              eq(messages.messageIdHeader, q.startsWith("<") ? q : `<${q}>`),
              eq(messages.messageIdHeader, q),
            )
          : undefined,
        o.rcpt ? eq(deliveries.rcpt, o.rcpt.toLowerCase()) : undefined,
        o.sender ? eq(messages.mailFrom, o.sender.toLowerCase()) : undefined,
        o.domain
          ? like(deliveries.rcpt, `%@${o.domain.toLowerCase().replace(/[\\%_]/g, "\\$&")}`)
          : undefined,
        o.cursor !== undefined ? lt(deliveries.id, o.cursor) : undefined,
      ),
    )
    .orderBy(desc(deliveries.id))
    .limit(o.limit + 1);
  const page = rows.slice(0, o.limit).map((r) => ({
    ...r,
    nextAttemptAt: isPending(r.status) ? r.nextAttemptAt.toISOString() : null,
    receivedAt: r.receivedAt.toISOString(),
  }));
  return rows.length > o.limit ? { entries: page, nextCursor: page.at(-1)!.deliveryId } : { entries: page };
}

export interface MessageDetail {
  id: string;
  receivedAt: string;
  direction: string;
  from: string;
  helo: string | null;
  clientIp: string | null;
  authUser: string | null;
  size: number;
  subject: string | null;
  messageId: string | null;
  envid: string | null;
  ret: string | null;
  authResults: unknown;
  headers: { name: string; value: string }[];
  recipients: {
    rcpt: string;
    target: string;
    status: string;
    attempts: number;
    nextAttemptAt: string | null;
    lastReply: string | null;
    deliveredAt: string | null;
    history: { at: string; host: string | null; reply: string | null; durationMs: number; outcome: string }[];
  }[];
}

export async function showMessage(db: Db, id: string): Promise<MessageDetail | undefined> {
  const [m] = await db.select().from(messages).where(eq(messages.id, id));
  if (!m) return undefined;
  const ds = await db
    .select()
    .from(deliveries)
    .where(eq(deliveries.messageId, id))
    .orderBy(asc(deliveries.id));
  const tries =
    ds.length === 0
      ? []
      : await db
          .select()
          .from(attempts)
          .where(
            inArray(
              attempts.deliveryId,
              ds.map((d) => d.id),
            ),
          )
          .orderBy(asc(attempts.at), asc(attempts.id));
  return {
    id: m.id,
    receivedAt: m.receivedAt.toISOString(),
    direction: m.direction,
    from: m.mailFrom,
    helo: m.helo,
    clientIp: m.clientIp,
    authUser: m.authUser,
    size: m.size,
    subject: m.subject,
    messageId: m.messageIdHeader,
    envid: m.envid,
    ret: m.ret,
    authResults: m.authResults ?? null,
    headers: readHeaders(m.raw).map(([name, value]) => ({ name, value })),
    recipients: ds.map((d) => ({
      rcpt: d.rcpt,
      target: d.target,
      status: d.status,
      attempts: d.attempts,
      nextAttemptAt: isPending(d.status) ? d.nextAttemptAt.toISOString() : null,
      lastReply: d.lastReply,
      deliveredAt: d.deliveredAt?.toISOString() ?? null,
      history: tries
        .filter((t) => t.deliveryId === d.id)
        .map((t) => ({
          at: t.at.toISOString(),
          host: t.host,
          reply: t.reply,
          durationMs: t.durationMs,
          outcome: t.outcome,
        })),
    })),
  };
}

/** Makes pending deliveries due now (one message, or all); returns how many. */
export async function retryNow(db: Db, id: string | "all"): Promise<number> {
  const pending = inArray(deliveries.status, PENDING_STATUSES);
  const rows = await db
    .update(deliveries)
    .set({ nextAttemptAt: sql`now()` })
    .where(id === "all" ? pending : and(pending, eq(deliveries.messageId, id)))
    .returning({ id: deliveries.id });
  return rows.length;
}

/** Drops a message with its deliveries and history; false when there was no such message. */
export async function removeMessage(db: Db, id: string): Promise<boolean> {
  const rows = await db.delete(messages).where(eq(messages.id, id)).returning({ id: messages.id });
  return rows.length > 0;
}

const isPending = (s: DeliveryStatus) => (PENDING_STATUSES as readonly DeliveryStatus[]).includes(s);

/** Deliveries waiting, per pending status (on the due index: the cost follows the queue, not the history). */
export async function queueDepth(db: Db): Promise<Record<(typeof PENDING_STATUSES)[number], number>> {
  const rows = await db
    .select({ status: deliveries.status, n: count() })
    .from(deliveries)
    .where(inArray(deliveries.status, PENDING_STATUSES))
    .groupBy(deliveries.status);
  const by = new Map(rows.map((row) => [row.status, Number(row.n)]));
  return { queued: by.get("queued") ?? 0, deferred: by.get("deferred") ?? 0 };
}

/** Age in seconds of the oldest waiting delivery, on the database's clock; 0 when none waits. */
export async function oldestWaitingSeconds(db: Db): Promise<number> {
  const [row] = await db
    .select({
      age: sql<number>`coalesce(extract(epoch from (now() - min(${deliveries.createdAt}))), 0)`.mapWith(
        Number,
      ),
    })
    .from(deliveries)
    .where(inArray(deliveries.status, PENDING_STATUSES));
  return Math.max(0, row?.age ?? 0);
}
