// GET /api/mailboxes/:address/messages: what `mailbox` routes kept, newest first.
import { and, desc, eq, lt, or } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { deliveries, messages } from "../db/schema.ts";
import { fromAddress } from "../mail/headers.ts";

export interface MailboxPage {
  messages: MailboxMessage[];
  /** Pass back as `cursor` for the next page; absent on the last page. */
  nextCursor?: string;
}

export interface MailboxMessage {
  id: string;
  /** The header From address (what a mail client shows); null when there is none. */
  from: string | null;
  /** The envelope sender ("" for a bounce). */
  mailFrom: string;
  to: string[];
  subject: string | null;
  receivedAt: string;
  authResults: unknown;
  raw: string;
}

interface Cursor {
  receivedAt: Date;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.receivedAt.toISOString()}|${c.id}`).toString("base64url");
}

export function decodeCursor(text: string): Cursor | undefined {
  const [at, id] = Buffer.from(text, "base64url").toString("utf8").split("|");
  const receivedAt = new Date(at ?? "");
  return id && !Number.isNaN(receivedAt.getTime()) ? { receivedAt, id } : undefined;
}

const utf8 = new TextDecoder("utf-8");

export async function mailboxMessages(
  db: Db,
  address: string,
  limit: number,
  cursor?: Cursor,
): Promise<MailboxPage> {
  const kept = and(eq(deliveries.rcpt, address), eq(deliveries.target, "mailbox"));
  const after = cursor
    ? or(
        lt(messages.receivedAt, cursor.receivedAt),
        and(eq(messages.receivedAt, cursor.receivedAt), lt(messages.id, cursor.id)),
      )
    : undefined;
  const rows = await db
    .selectDistinct({
      id: messages.id,
      mailFrom: messages.mailFrom,
      subject: messages.subject,
      receivedAt: messages.receivedAt,
      authResults: messages.authResults,
      raw: messages.raw,
    })
    .from(messages)
    .innerJoin(deliveries, eq(deliveries.messageId, messages.id))
    .where(and(kept, after))
    .orderBy(desc(messages.receivedAt), desc(messages.id))
    .limit(limit + 1);
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    messages: page.map((r) => ({
      id: r.id,
      from: fromAddress(r.raw),
      mailFrom: r.mailFrom,
      to: [address],
      subject: r.subject,
      receivedAt: r.receivedAt.toISOString(),
      authResults: r.authResults ?? null,
      raw: utf8.decode(r.raw),
    })),
    ...(rows.length > limit && last ? { nextCursor: encodeCursor(last) } : {}),
  };
}
