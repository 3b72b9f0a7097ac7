// The suppression list: addresses a sending domain no longer mails (a hard bounce, or by hand).
// Kept per sending domain: one app's hard-bounced address is not another's business.
import { and, asc, eq } from "drizzle-orm";
import type { Db, Tx } from "../db/open.ts";
import { suppressions } from "../db/schema.ts";
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

export async function writeSuppressions(
  tx: Db | Tx,
  rows: (typeof suppressions.$inferInsert)[],
): Promise<void> {
  if (rows.length > 0) await tx.insert(suppressions).values(rows).onConflictDoNothing();
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
