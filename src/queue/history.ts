// Finished mail leaves the database after a while, as a delivered message leaves Postfix's queue:
// otherwise every relayed byte stays on disk forever. A message goes once none of its deliveries
// is pending and none is a mailbox copy (a mailbox keeps its mail until the API deletes it), and
// it came in more than the history period ago; its deliveries and attempts go with it (cascade).
import { and, eq, inArray, lt, notExists, notInArray, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { deliveries, messages } from "../db/schema.ts";
import { errorMessage, type Logger } from "../log.ts";

/** Rows deleted per statement: short transactions, whatever the backlog. */
const PURGE_BATCH = 1000;

/** The first purge after start: a restart does not put it off by a whole period (nor run it amid start-up). */
const FIRST_PURGE_MS = 60_000;

/** Deletes up to `limit` finished messages received more than `days` ago; returns how many. */
export async function purgeFinished(db: Db, days: number, limit = PURGE_BATCH): Promise<number> {
  const stillNeeded = db
    .select({ one: sql`1` })
    .from(deliveries)
    .where(
      and(
        eq(deliveries.messageId, messages.id),
        // any status but the two final ones: a status added later is kept, not purged
        or(notInArray(deliveries.status, ["delivered", "bounced"]), eq(deliveries.target, "mailbox")),
      ),
    );
  // SKIP LOCKED: instances sharing the database purge side by side without waiting on each other.
  const expired = db
    .select({ id: messages.id })
    .from(messages)
    .where(and(lt(messages.receivedAt, sql`now() - make_interval(days => ${days})`), notExists(stillNeeded)))
    .orderBy(messages.receivedAt)
    .limit(limit)
    .for("update", { skipLocked: true });
  const gone = await db.delete(messages).where(inArray(messages.id, expired)).returning({ id: messages.id });
  return gone.length;
}

/** Purges now and then, batch after batch until the backlog is gone. */
export class HistoryPruner {
  private timer: ReturnType<typeof setInterval> | undefined;
  private first: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly days: number,
    private readonly log: Logger,
    private readonly everyMs = 10 * 60 * 1000,
  ) {}

  start(): void {
    if (this.days === 0) return;
    const tick = () => {
      this.running ??= this.purge().finally(() => {
        this.running = undefined;
      });
    };
    this.first = setTimeout(tick, Math.min(this.everyMs, FIRST_PURGE_MS));
    this.timer = setInterval(tick, this.everyMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.first);
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async purge(): Promise<void> {
    let total = 0;
    try {
      for (;;) {
        const n = await purgeFinished(this.db, this.days);
        total += n;
        if (n < PURGE_BATCH || this.timer === undefined) break;
      }
    } catch (err) {
      this.log.warn("purging finished messages failed", { error: errorMessage(err) });
    }
    if (total > 0) this.log.info("finished messages purged", { count: total, olderThanDays: this.days });
  }
}
