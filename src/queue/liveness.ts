// Proof that a scheduler is alive, so that the deliveries of one that is not are taken over in
// seconds rather than when their lease runs out. Each scheduler renews its row in `workers`
// every HEARTBEAT_MS; a lease whose owner's row has lapsed is as good as free. Everything is
// judged by the database's clock, so the nodes' clocks need not agree.
import { eq, isNotNull, lt, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { deliveries, workers } from "../db/schema.ts";

/** How often a scheduler renews its proof of life. */
export const HEARTBEAT_MS = 5000;

/**
 * While the database was away nobody could renew: a scheduler that was cut off itself waits this
 * long after the trouble before it judges others by their lapsed rows, so that they have had
 * time to renew theirs (every HEARTBEAT_MS) and are not taken for dead while they deliver.
 */
export const TAKEOVER_QUIET_MS = 15_000;

/**
 * How long one renewal proves it: a dead scheduler's deliveries are free at most this long after
 * its last renewal (and claimed at the next poll), well within 30 s of its death.
 */
export const ALIVE_SECONDS = 20;

/** Rows of schedulers dead this long are removed: nothing refers to them any more. */
const FORGET_AFTER = sql`interval '1 day'`;

/** Renews `owner`'s proof of life. */
export async function heartbeat(db: Db, owner: string): Promise<void> {
  const until = sql`now() + make_interval(secs => ${ALIVE_SECONDS})`;
  await db
    .insert(workers)
    .values({ owner, aliveUntil: until })
    .onConflictDoUpdate({ target: workers.owner, set: { aliveUntil: until } });
}

/** A scheduler that stops on purpose says so (its leases are given back before this). */
export async function retire(db: Db, owner: string): Promise<void> {
  await db.delete(workers).where(eq(workers.owner, owner));
  await db.delete(workers).where(lt(workers.aliveUntil, sql`now() - ${FORGET_AFTER}`));
}

/**
 * True (as SQL, for a claim's WHERE) when the delivery's lease owner no longer proves it is
 * alive: its row lapsed, or there is none (it stopped, or never was).
 */
export function ownerGone(): SQL {
  return sql`not exists (select 1 from ${workers} w where w.owner = ${deliveries.leaseOwner} and w.alive_until > now())`;
}

/**
 * Frees every lease at once. Only for the embedded database: the data dir's lock proves that no
 * other process is alive, so whatever an earlier process held is nobody's now.
 */
export async function freeAllLeases(db: Db): Promise<void> {
  await db
    .update(deliveries)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(isNotNull(deliveries.leaseOwner));
  await db.delete(workers);
}
