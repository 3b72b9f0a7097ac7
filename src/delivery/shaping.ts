// Outbound traffic shaping, held across every node in the database: before a group connects, the
// shape covering its destination grants it messages from the minute and hour budgets and one of
// its connection slots; a destination paused because it said "rate limited" gets nothing until
// the pause ends, then one connection at a time (slow start) for as long again. A group told to
// wait is deferred to the time it may go, without a connection.
import { and, asc, eq, lt, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { destinationPauses, shapeCounts, shapeSlots, shapes } from "../db/schema.ts";
import { matchShape } from "./shape-pattern.ts";

export type Shape = typeof shapes.$inferSelect;

/** A pause's first cool-down, and the most it grows to while the destination keeps refusing. */
export const COOLDOWN_SECONDS = { first: 60, max: 3600 };

/** How long a connection slot is held at most (a group still running past it loses the slot). */
const SLOT_LEASE_SECONDS = 600;

export type Admission =
  | {
      kind: "go";
      /** Messages of the group that may go now (the rest wait for `retryAt`). */
      messages: number;
      retryAt: Date | undefined;
      /** The pause key: a `rate-limit` reply pauses it. */
      key: string;
      /** A connection slot is held: the connection is closed with the group, not kept idle. */
      slotted: boolean;
      release(): Promise<void>;
    }
  | { kind: "wait"; until: Date; reply: string };

/** How many destinations are paused right now. */
export async function pausedDestinations(db: Db): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(destinationPauses)
    .where(sql`${destinationPauses.pausedUntil} > now()`);
  return row?.n ?? 0;
}

export async function listPauses(db: Db) {
  return db.select().from(destinationPauses).orderBy(asc(destinationPauses.key));
}

export async function listShapes(db: Db): Promise<Shape[]> {
  return db.select().from(shapes).orderBy(asc(shapes.pattern));
}

const minuteStart = (now: Date) => new Date(Math.floor(now.getTime() / 60_000) * 60_000);
const hourStart = (now: Date) => new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000);
const hhmm = (d: Date) => d.toISOString().slice(11, 19);

/** Why a group (or the part of it that did not fit) waits for a shape's budget. */
export function budgetReply(key: string, until: Date): string {
  return `451 4.7.0 ${key}: the shape's budget is used up until ${hhmm(until)} UTC`;
}

export class Shaper {
  private cache: { shapes: Shape[]; at: number } | undefined;

  constructor(
    private readonly db: Db,
    private readonly owner: string,
    /** How long the list of shapes is read once for (a `shape add` is seen within it). */
    private readonly cacheMs = 5000,
  ) {}

  /** May a group of `messages` messages to `domain` through `mxHosts` go now, and how much of it? */
  async admit(
    domain: string,
    mxHosts: readonly string[],
    messages: number,
    now = new Date(),
  ): Promise<Admission> {
    const all = await this.shapes();
    const pattern = matchShape(
      all.map((s) => s.pattern),
      domain,
      mxHosts,
    );
    const shape = all.find((s) => s.pattern === pattern);
    const key = pattern ?? domain.toLowerCase();
    const [pause] = await this.db.select().from(destinationPauses).where(eq(destinationPauses.key, key));
    if (pause && pause.pausedUntil > now)
      return {
        kind: "wait",
        until: pause.pausedUntil,
        reply: `451 4.7.0 ${key} paused until ${hhmm(pause.pausedUntil)} UTC because ${pause.reason}`,
      };
    // Slow start after a pause: one connection at a time, for as long as the pause lasted.
    const slow = pause && now.getTime() < pause.pausedUntil.getTime() + pause.cooldownSeconds * 1000;
    const connections = slow ? 1 : shape?.connections;
    const slotKey = slow ? `slow:${key}` : key;
    const slot = connections ? await this.takeSlot(slotKey, connections) : undefined;
    if (connections && slot === undefined)
      return {
        kind: "wait",
        until: new Date(now.getTime() + 5_000),
        reply: `451 4.7.0 ${key}: all ${connections} connection${connections === 1 ? "" : "s"} of its shape in use`,
      };
    const release = async () => {
      if (slot !== undefined) await this.releaseSlot(slotKey, slot);
    };
    const slotted = slot !== undefined;
    if (!shape?.perMinute && !shape?.perHour)
      return { kind: "go", messages, retryAt: undefined, key, slotted, release };
    let granted: { messages: number; retryAt: Date | undefined };
    try {
      granted = await this.grant(shape, messages, now);
    } catch (err) {
      await release();
      throw err;
    }
    if (granted.messages === 0) {
      await release();
      return {
        kind: "wait",
        until: granted.retryAt!,
        reply: budgetReply(key, granted.retryAt!),
      };
    }
    return { kind: "go", messages: granted.messages, retryAt: granted.retryAt, key, slotted, release };
  }

  /** A `rate-limit` reply: pause `key` everywhere; the cool-down doubles if it was paused lately. */
  async pause(key: string, reason: string, now = new Date()): Promise<Date> {
    const at = now.toISOString();
    const fresh = sql`${destinationPauses.pausedUntil} + make_interval(secs => ${destinationPauses.cooldownSeconds} * 2) > ${at}::timestamptz`;
    const cooldown = sql`case when ${fresh} then least(${destinationPauses.cooldownSeconds} * 2, ${COOLDOWN_SECONDS.max}) else ${COOLDOWN_SECONDS.first} end`;
    const [row] = await this.db
      .insert(destinationPauses)
      .values({
        key,
        pausedUntil: new Date(now.getTime() + COOLDOWN_SECONDS.first * 1000),
        cooldownSeconds: COOLDOWN_SECONDS.first,
        reason: reason.slice(0, 300),
      })
      .onConflictDoUpdate({
        target: destinationPauses.key,
        set: {
          cooldownSeconds: cooldown,
          pausedUntil: sql`${at}::timestamptz + make_interval(secs => ${cooldown})`,
          reason: reason.slice(0, 300),
        },
      })
      .returning({ until: destinationPauses.pausedUntil });
    return row!.until;
  }

  private async shapes(): Promise<Shape[]> {
    if (!this.cache || Date.now() - this.cache.at > this.cacheMs)
      this.cache = { shapes: await listShapes(this.db), at: Date.now() };
    return this.cache.shapes;
  }

  /** A free connection slot of `key` (1..n), leased to us; undefined when all are in use. */
  private async takeSlot(key: string, n: number): Promise<number | undefined> {
    for (let slot = 1; slot <= n; slot++) {
      const leaseUntil = sql`now() + make_interval(secs => ${SLOT_LEASE_SECONDS})`;
      const rows = await this.db
        .insert(shapeSlots)
        .values({ key, slot, owner: this.owner, leaseUntil })
        .onConflictDoUpdate({
          target: [shapeSlots.key, shapeSlots.slot],
          set: { owner: this.owner, leaseUntil },
          setWhere: sql`${shapeSlots.owner} is null or ${shapeSlots.leaseUntil} < now()`,
        })
        .returning({ slot: shapeSlots.slot });
      if (rows.length > 0) return slot;
    }
    return undefined;
  }

  private async releaseSlot(key: string, slot: number): Promise<void> {
    await this.db
      .update(shapeSlots)
      .set({ owner: null, leaseUntil: null })
      .where(and(eq(shapeSlots.key, key), eq(shapeSlots.slot, slot), eq(shapeSlots.owner, this.owner)));
  }

  /**
   * Takes up to `want` messages from the shape's minute and hour budgets (the smaller room of the
   * two), in one transaction; `retryAt` is when the binding budget opens again, if not all fit.
   */
  private async grant(
    shape: Shape,
    want: number,
    now: Date,
  ): Promise<{ messages: number; retryAt: Date | undefined }> {
    const windows = [
      ...(shape.perMinute
        ? [{ window: "m" as const, start: minuteStart(now), limit: shape.perMinute, span: 60_000 }]
        : []),
      ...(shape.perHour
        ? [{ window: "h" as const, start: hourStart(now), limit: shape.perHour, span: 3_600_000 }]
        : []),
    ];
    return this.db.transaction(async (tx) => {
      let granted = want;
      let retryAt: Date | undefined;
      for (const w of windows) {
        await tx
          .insert(shapeCounts)
          .values({ pattern: shape.pattern, window: w.window, start: w.start, count: 0 })
          .onConflictDoNothing();
        const [row] = await tx
          .select({ count: shapeCounts.count })
          .from(shapeCounts)
          .where(
            and(
              eq(shapeCounts.pattern, shape.pattern),
              eq(shapeCounts.window, w.window),
              eq(shapeCounts.start, w.start),
            ),
          )
          .for("update");
        const room = Math.max(0, w.limit - row!.count);
        if (room < granted) {
          granted = room;
        }
        if (room < want) {
          const opens = new Date(w.start.getTime() + w.span);
          if (!retryAt || opens > retryAt) retryAt = opens;
        }
      }
      if (granted > 0)
        for (const w of windows)
          await tx
            .update(shapeCounts)
            .set({ count: sql`${shapeCounts.count} + ${granted}` })
            .where(
              and(
                eq(shapeCounts.pattern, shape.pattern),
                eq(shapeCounts.window, w.window),
                eq(shapeCounts.start, w.start),
              ),
            );
      // windows that are over are of no more use
      await tx
        .delete(shapeCounts)
        .where(and(eq(shapeCounts.pattern, shape.pattern), lt(shapeCounts.start, hourStart(now))));
      return { messages: granted, retryAt: granted < want ? retryAt : undefined };
    });
  }
}
