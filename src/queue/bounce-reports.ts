// A delivery report (DSN) that came back on port 25 for mail we sent, turned into what it tells:
// a `bounced` event per failed recipient of that message, and a suppression when the bounce is
// hard. Written with the report's own message (Enqueuer), so they exist iff it was accepted.
// Only recipients the message really had are taken: a forged report can speak of no one else.
import { and, desc, eq, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { deliveries, messages, type suppressions } from "../db/schema.ts";
import { classifyOutcome, readReply } from "../delivery/bounce-class.ts";
import { domainOf } from "../mail/address.ts";
import type { DeliveryReport } from "../mail/delivery-report.ts";
import type { NewEvent } from "./events.ts";

export interface ReportedBounces {
  /** Our message the report is about. */
  messageId: string;
  events: NewEvent[];
  suppressions: (typeof suppressions.$inferInsert)[];
}

export async function reportedBounces(
  db: Db,
  report: DeliveryReport,
  at: Date,
): Promise<ReportedBounces | undefined> {
  const failed = report.recipients.filter((r) => r.action === "failed");
  if (failed.length === 0) return undefined;
  // Our id travels as the ENVID when the submitter gave none; else theirs, or the Message-ID.
  const which = report.envid
    ? or(eq(messages.id, report.envid), eq(messages.envid, report.envid))
    : report.messageId
      ? eq(messages.messageIdHeader, report.messageId)
      : undefined;
  if (!which) return undefined;
  const [message] = await db
    .select({
      id: messages.id,
      mailFrom: messages.mailFrom,
      messageIdHeader: messages.messageIdHeader,
    })
    .from(messages)
    .where(and(eq(messages.direction, "outbound"), which))
    .orderBy(desc(messages.receivedAt))
    .limit(1);
  if (!message) return undefined;
  const sent = await db
    .select({ rcpt: deliveries.rcpt, attempts: deliveries.attempts })
    .from(deliveries)
    .where(
      and(
        eq(deliveries.messageId, message.id),
        sql`lower(${deliveries.rcpt}) in ${failed.map((f) => f.address)}`,
      ),
    );
  const events: NewEvent[] = [];
  const suppressed: ReportedBounces["suppressions"] = [];
  for (const d of sent) {
    const r = failed.find((f) => f.address === d.rcpt.toLowerCase())!;
    const reply = readReply(r.diagnostic ?? "");
    const enhanced = reply.enhanced ?? r.status;
    const cls = classifyOutcome({ from: "remote", code: reply.code, enhanced, text: reply.text });
    events.push({
      type: "bounced",
      at,
      messageId: message.id,
      messageIdHeader: message.messageIdHeader,
      mailFrom: message.mailFrom,
      rcpt: d.rcpt,
      attempt: d.attempts,
      mx: r.remoteMta ?? report.reportingMta ?? null,
      replyCode: reply.code || null,
      replyEnhanced: enhanced ?? null,
      replyText: reply.text || `delivery report: ${r.status ?? "failed"}`,
      class: cls,
      tls: null,
    });
    if (cls === "hard" && message.mailFrom !== "")
      suppressed.push({
        domain: domainOf(message.mailFrom),
        address: d.rcpt.toLowerCase(),
        reason: "hard bounce (delivery report)",
        code: r.diagnostic ?? r.status ?? null,
        messageId: message.id,
        at,
      });
  }
  return events.length > 0 ? { messageId: message.id, events, suppressions: suppressed } : undefined;
}
