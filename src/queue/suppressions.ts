// The suppression list: addresses a sending domain no longer mails (a hard bounce, or by hand).
// Kept per sending domain: one app's hard-bounced address is not another's business.
import { and, asc, eq } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { domains, events, suppressions } from "../db/schema.ts";
import { domainOf } from "../mail/address.ts";
import { classOfReport } from "./events.ts";
import type { SettledDelivery } from "./settle.ts";

export type Suppression = typeof suppressions.$inferSelect;

/** A hard bounce of mail we sent out suppresses that recipient for the sending domain. */
export function suppressionsFrom(
  settled: readonly SettledDelivery[],
  at: Date,
): (typeof suppressions.$inferInsert)[] {
  return settled.flatMap((s) =>
    s.message.direction === "outbound" &&
    s.message.mailFrom !== "" &&
    s.report.outcome === "bounced" &&
    !s.expired &&
    classOfReport(s.report) === "hard"
      ? [
          {
            domain: domainOf(s.message.mailFrom),
            address: s.delivery.rcpt.toLowerCase(),
            reason: "hard bounce",
            code: s.report.reply,
            messageId: s.message.id,
            at,
          },
        ]
      : [],
  );
}

export async function findSuppression(
  db: Db,
  domain: string,
  address: string,
): Promise<Suppression | undefined> {
  const [row] = await db
    .select()
    .from(suppressions)
    .where(
      and(eq(suppressions.domain, domain.toLowerCase()), eq(suppressions.address, address.toLowerCase())),
    );
  return row;
}

export async function listSuppressions(db: Db, domain?: string): Promise<Suppression[]> {
  return db
    .select()
    .from(suppressions)
    .where(domain ? eq(suppressions.domain, domain.toLowerCase()) : undefined)
    .orderBy(asc(suppressions.domain), asc(suppressions.address));
}

/**
 * The suppression that refuses mail from `mailFrom` to `address`, if any, with the `suppressed`
 * event that tells the sending app so (written with the refusal: no message exists to carry it).
 */
export async function suppressionRefusing(
  db: Db,
  mailFrom: string,
  address: string,
): Promise<Suppression | undefined> {
  const found = await findSuppression(db, domainOf(mailFrom), address);
  if (found) {
    await db.insert(events).values({
      type: "suppressed",
      mailFrom,
      rcpt: address,
      replyCode: 550,
      replyEnhanced: "5.7.1",
      replyText: suppressedText(address, found),
    });
  }
  return found;
}

/** Why mail to a suppressed address is refused: the SMTP reply's text, and the event's. */
export function suppressedText(address: string, s: Pick<Suppression, "reason" | "at">): string {
  return `<${address}>: recipient is suppressed (${s.reason}, since ${s.at.toISOString().slice(0, 10)})`;
}

/** True when it was not there yet. */
export async function addSuppression(
  db: Db,
  domain: string,
  address: string,
  reason: string,
): Promise<boolean> {
  const rows = await db
    .insert(suppressions)
    .values({ domain: domain.toLowerCase(), address: address.toLowerCase(), reason })
    .onConflictDoNothing()
    .returning();
  return rows.length > 0;
}

/** True when there was one to remove. */
export async function removeSuppression(db: Db, domain: string, address: string): Promise<boolean> {
  const rows = await db
    .delete(suppressions)
    .where(
      and(eq(suppressions.domain, domain.toLowerCase()), eq(suppressions.address, address.toLowerCase())),
    )
    .returning();
  return rows.length > 0;
}

/** The sending domains a suppression applies to: `domain` if it is local (else none), or every local one. */
export async function suppressionDomains(db: Db, domain: string | undefined): Promise<string[]> {
  const rows = await db
    .select({ name: domains.name })
    .from(domains)
    .where(domain === undefined ? undefined : eq(domains.name, domain.toLowerCase()))
    .orderBy(asc(domains.name));
  return rows.map((r) => r.name);
}

/** A suppression as the API shows it (CONTRACT: events, suppressions and keys). */
export function suppressionView(s: Suppression) {
  return {
    address: s.address,
    domain: s.domain,
    reason: s.reason,
    code: s.code,
    messageId: s.messageId,
    at: s.at.toISOString(),
  };
}
