// Counting outbound TLS sessions for TLS-RPT: in memory as they happen (the delivery path pays a
// map update), written to the database now and then as increments, so every node adds to the
// same period's counts and a restart loses at most one interval.
import { sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { tlsSessionCounts } from "../db/schema.ts";
import type { TlsSession } from "../delivery/smtp-courier.ts";

type Row = typeof tlsSessionCounts.$inferInsert;

const keyOf = (r: Row) => [r.periodStart.getTime(), r.domain, r.policyId, r.result, r.mx, r.ip].join("\0");

/**
 * How often counts are written (a quarter period, 0.2 to 10 s) and how long after a period ends
 * its report waits for every node's last write (two of those).
 */
export function reportTiming(periodSeconds: number) {
  const flushMs = Math.min(10_000, Math.max(200, (periodSeconds * 1000) / 4));
  return { periodSeconds, flushMs, graceMs: 2 * flushMs };
}

/** The start of the report period `at` falls in: periods are whole multiples of their length. */
export function periodStart(at: number, periodSeconds: number): Date {
  const ms = periodSeconds * 1000;
  return new Date(Math.floor(at / ms) * ms);
}

export class TlsSessionCounter {
  private pending = new Map<string, Row>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly o: {
      db: Db;
      periodSeconds: number;
      flushMs: number;
      onError(err: unknown): void;
      now?: () => number;
    },
  ) {}

  record(session: TlsSession): void {
    const start = periodStart((this.o.now ?? Date.now)(), this.o.periodSeconds);
    const p = session.policy;
    const row: Row = {
      periodStart: start,
      domain: session.domain,
      policyId: p?.id ?? "",
      policyMode: p?.mode ?? "",
      policyMx: p?.mx ?? [],
      policyMaxAge: p?.maxAge ?? 0,
      result: session.failure?.type ?? "success",
      // Successes are summed per policy only (RFC 8460 4.4 counts them without detail).
      mx: session.failure ? (session.mx ?? "") : "",
      ip: session.failure ? (session.ip ?? "") : "",
      detail: session.failure?.detail ?? "",
      count: 1,
    };
    const counted = this.pending.get(keyOf(row));
    if (counted) {
      counted.count = (counted.count ?? 0) + 1;
      counted.detail = row.detail;
    } else this.pending.set(keyOf(row), row);
  }

  start(): void {
    this.timer = setInterval(() => this.flush().catch(this.o.onError), this.o.flushMs);
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  /** Adds the counts so far to the database; on failure they stay pending for the next time. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0) return;
    const rows = [...this.pending.values()];
    this.pending = new Map();
    try {
      await this.o.db
        .insert(tlsSessionCounts)
        .values(rows)
        .onConflictDoUpdate({
          target: [
            tlsSessionCounts.periodStart,
            tlsSessionCounts.domain,
            tlsSessionCounts.policyId,
            tlsSessionCounts.result,
            tlsSessionCounts.mx,
            tlsSessionCounts.ip,
          ],
          set: {
            count: sql`${tlsSessionCounts.count} + excluded.count`,
            detail: sql`excluded.detail`,
          },
        });
    } catch (err) {
      for (const r of rows) {
        const later = this.pending.get(keyOf(r));
        if (later) later.count = (later.count ?? 0) + (r.count ?? 0);
        else this.pending.set(keyOf(r), r);
      }
      this.o.onError(err);
    }
  }
}
