// The delivery loop of one `serve` process. It claims due deliveries, groups them by destination,
// hands each group to its courier within a global and a per-destination concurrency limit, and
// settles what comes back. New mail wakes it at once (LISTEN/NOTIFY on the queue channel);
// polling is only the fallback, and the way deferred deliveries come due.

import { sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { type Courier, destinationOf, type Job } from "../delivery/courier.ts";
import { errorMessage, type Logger } from "../log.ts";
import {
  type ClaimedDelivery,
  claimDue,
  deferUnreadable,
  loadMessages,
  loadSizes,
  nextDueAt,
  type QueuedMessage,
  releaseLeases,
  renewLeases,
} from "./claim.ts";
import { takeGroup } from "./grouping.ts";
import { retryDelaySeconds } from "./retry.ts";
import { type DsnWriter, type SettledDelivery, type SettlePolicy, settle } from "./settle.ts";

/** Deliveries claimed in one round at most. */
const MAX_CLAIM = 500;

/** Wake a little after the next retry is due rather than before: early finds nothing. */
const RETRY_SLACK_MS = 25;

export interface SchedulerOptions {
  db: Db;
  /** Names this process in lease_owner. */
  owner: string;
  courierFor(target: string): Courier;
  policy: SettlePolicy;
  dsns: DsnWriter;
  log: Logger;
  /** Groups in flight at once, all destinations. */
  concurrency: number;
  /** Groups in flight per destination, reached by slow start (Postfix: 20, starting at 5). */
  perDestination: number;
  initialPerDestination: number;
  /** Jobs handed to one courier call (one connection). */
  jobsPerGroup: number;
  /**
   * Message bytes one group loads at most (a bigger message goes alone), and all groups in flight
   * together: bodies are read when their group starts, so memory stays bounded however big and
   * many the claimed messages are.
   */
  maxGroupBytes: number;
  maxBytesInFlight: number;
  /** How long a claim is ours; renewed every third of it while the delivery is waiting or running. */
  leaseSeconds: number;
  pollMs: number;
  /** How long `stop` waits for groups in flight. */
  stopGraceMs: number;
  /** Subscribes to the queue channel; resolves to the unsubscribe function. */
  listen?(onNotify: () => void): Promise<() => Promise<void>>;
  /** Told of each batch of attempts once its settling transaction has committed (metrics). */
  onSettled?(settled: SettledDelivery[]): void;
}

/** A claimed delivery waiting for its group; its message body is not loaded yet. */
interface Waiting {
  delivery: ClaimedDelivery;
  size: number;
}

interface Destination {
  waiting: Waiting[];
  running: number;
  limit: number;
}

export class Scheduler {
  private running = false;
  private readonly destinations = new Map<string, Destination>();
  private inFlight = 0;
  private bytesInFlight = 0;
  /** A destination whose next group waits for room in the byte budget. */
  private blocked: string | undefined;
  private readonly groups = new Set<Promise<void>>();
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private unlisten: (() => Promise<void>) | undefined;
  private loopDone: Promise<void> | undefined;
  /** Claimed and not yet settled: the deliveries whose leases we keep alive. */
  private readonly held = new Set<number>();
  private renewTimer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly o: SchedulerOptions) {}

  async start(): Promise<void> {
    this.running = true;
    this.unlisten = await this.o.listen?.(() => this.wake());
    this.loopDone = this.loop();
    this.renewTimer = setInterval(() => void this.renewLeases(), (this.o.leaseSeconds * 1000) / 3);
  }

  /** New mail is due: claim now instead of at the next poll. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Stops claiming, lets groups in flight finish (bounded), gives unstarted leases back. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake();
    await this.unlisten?.();
    await this.loopDone;
    const finished = Promise.all(this.groups);
    await Promise.race([finished, Bun.sleep(this.o.stopGraceMs)]);
    clearInterval(this.renewTimer);
    const unstarted = [...this.destinations.values()].flatMap((d) => d.waiting.map((j) => j.delivery.id));
    this.destinations.clear();
    this.held.clear();
    await releaseLeases(this.o.db, this.o.owner, unstarted).catch((err) =>
      this.o.log.warn("releasing leases failed", { error: errorMessage(err) }),
    );
  }

  /**
   * A slow destination can keep a group running, and claimed jobs waiting, longer than a lease:
   * without renewal another instance (or our own next claim) would take them over and deliver
   * them a second time. Jobs whose lease was lost anyway (the database was out of reach for a
   * whole lease) are not started: whoever holds them now delivers them.
   */
  private async renewLeases(): Promise<void> {
    const ids = [...this.held];
    let lost: Set<number>;
    try {
      lost = await renewLeases(this.o.db, this.o.owner, ids, this.o.leaseSeconds);
    } catch (err) {
      this.o.log.warn("renewing leases failed", { error: errorMessage(err) });
      return;
    }
    let dropped = 0;
    for (const [key, dest] of this.destinations) {
      const kept = dest.waiting.filter((j) => !lost.has(j.delivery.id));
      dropped += dest.waiting.length - kept.length;
      dest.waiting = kept;
      if (dest.running === 0 && dest.waiting.length === 0) this.destinations.delete(key);
    }
    for (const id of lost) this.held.delete(id);
    if (dropped > 0) this.o.log.warn("leases lost: deliveries left to their new holder", { count: dropped });
  }

  private get waitingCount(): number {
    let n = 0;
    for (const d of this.destinations.values()) n += d.waiting.length;
    return n;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.woken = false;
      // Claim about what can start soon: a claimed row waits in memory, and its lease is running.
      const room = Math.min(MAX_CLAIM, this.o.concurrency * this.o.jobsPerGroup - this.waitingCount);
      try {
        if (room > 0) await this.claim(room);
      } catch (err) {
        this.o.log.error("claiming deliveries failed", { error: errorMessage(err) });
      }
      this.dispatch();
      if (this.woken || !this.running) continue;
      // Full: a finishing group wakes us. Otherwise sleep until the next retry is due.
      const ms = room > 0 ? await this.untilNextDue() : this.o.pollMs;
      if (!this.woken && this.running) await this.sleep(ms);
    }
  }

  /** Until the next deferred delivery is due (any instance's), at most one poll interval. */
  private async untilNextDue(): Promise<number> {
    try {
      const next = await nextDueAt(this.o.db);
      if (next) return Math.min(this.o.pollMs, Math.max(0, next.getTime() - Date.now()) + RETRY_SLACK_MS);
    } catch (err) {
      this.o.log.warn("reading the next due time failed", { error: errorMessage(err) });
    }
    return this.o.pollMs;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    }).finally(() => {
      this.wakeUp = undefined;
    });
  }

  private async claim(limit: number): Promise<void> {
    // Held before the claim: a group settling while we wait below takes its ids out of `held`,
    // and a row our claim took back from it would look new.
    const heldBefore = new Set(this.held);
    const claimed = await claimDue(this.o.db, this.o.owner, limit, this.o.leaseSeconds);
    if (claimed.length === 0) return;
    let sizes: Map<string, number>;
    try {
      sizes = await loadSizes(this.o.db, [...new Set(claimed.map((c) => c.messageId))]);
    } catch (err) {
      // what this claim took is given back rather than left leased for a whole lease
      const taken = claimed.map((c) => c.id).filter((id) => !this.held.has(id));
      await releaseLeases(this.o.db, this.o.owner, taken).catch(() => {});
      throw err;
    }
    const retaken: number[] = [];
    for (const delivery of claimed) {
      // Our own lease ran out (the database was away) and this claim took the row back: it is
      // already waiting or running here, and the claim just renewed the lease.
      if (heldBefore.has(delivery.id) || this.held.has(delivery.id)) {
        retaken.push(delivery.id);
        continue;
      }
      const size = sizes.get(delivery.messageId);
      if (size === undefined) continue; // removed meanwhile (queue rm): nothing to deliver
      this.held.add(delivery.id);
      const key = destinationOf(delivery.target, delivery.rcpt);
      let dest = this.destinations.get(key);
      if (!dest) {
        dest = { waiting: [], running: 0, limit: this.o.initialPerDestination };
        this.destinations.set(key, dest);
      }
      dest.waiting.push({ delivery, size });
    }
    // A retaken row whose group ended meanwhile without settling it: nobody works on it now.
    await releaseLeases(
      this.o.db,
      this.o.owner,
      retaken.filter((id) => !this.held.has(id)),
    );
  }

  private dispatch(): void {
    // The destination whose group did not fit the budget last time gets the first group now, so
    // that freed bytes go to it and not to smaller groups that would keep it waiting for good;
    // then it goes to the back of the line, so that it cannot keep the others waiting either.
    const first = this.blocked;
    this.blocked = undefined;
    const firstDest = first === undefined ? undefined : this.destinations.get(first);
    if (first !== undefined && firstDest) {
      if (this.inFlight >= this.o.concurrency) {
        this.blocked = first; // nothing can start now: the turn stays
        return;
      }
      // At its own connection limit it has no turn: the next group that does not fit takes it.
      if (firstDest.running < firstDest.limit) {
        if (!this.startGroups(first, firstDest, 1)) return;
        this.destinations.delete(first);
        this.destinations.set(first, firstDest);
      }
    }
    for (const [key, dest] of this.destinations) {
      if (!this.startGroups(key, dest, Number.POSITIVE_INFINITY)) return;
    }
  }

  /**
   * Starts up to `most` groups of one destination, within its limit, the concurrency and the byte
   * budget. False when a group did not fit the budget: nothing more starts until it can (one
   * group always may run, however big), and it is remembered to go first.
   */
  private startGroups(key: string, dest: Destination, most: number): boolean {
    for (let started = 0; started < most; started++) {
      if (dest.waiting.length === 0 || dest.running >= dest.limit || this.inFlight >= this.o.concurrency)
        break;
      // oldest first: claimed in due order
      const { count, bytes } = takeGroup(dest.waiting, this.o.jobsPerGroup, this.o.maxGroupBytes);
      if (this.bytesInFlight > 0 && this.bytesInFlight + bytes > this.o.maxBytesInFlight) {
        this.blocked ??= key;
        return false;
      }
      const claimed = dest.waiting.splice(0, count);
      dest.running++;
      this.inFlight++;
      this.bytesInFlight += bytes;
      const group = this.runGroup(key, dest, claimed).finally(() => {
        for (const c of claimed) this.held.delete(c.delivery.id);
        dest.running--;
        this.inFlight--;
        this.bytesInFlight -= bytes;
        this.groups.delete(group);
        if (dest.running === 0 && dest.waiting.length === 0) this.destinations.delete(key);
        if (this.running) this.dispatch();
      });
      this.groups.add(group);
    }
    return true;
  }

  /**
   * The group's messages, bodies included. When the batch cannot be read, each message is read on
   * its own: one that still cannot be (a damaged row) is deferred like a failed attempt, so it
   * neither blocks its destination nor stays claimed. Undefined when the database is away: the
   * leases then run out and the deliveries come back.
   */
  private async readMessages(
    key: string,
    claimed: Waiting[],
  ): Promise<Map<string, QueuedMessage> | undefined> {
    const ids = [...new Set(claimed.map((c) => c.delivery.messageId))];
    try {
      return await loadMessages(this.o.db, ids);
    } catch (err) {
      this.o.log.error("loading messages failed", { destination: key, error: errorMessage(err) });
    }
    // One damaged row must not hold back the rest: each message on its own, if it is not the
    // database that is away (then the leases run out and the deliveries come back).
    try {
      await this.o.db.execute(sql`select 1`);
    } catch (err) {
      this.o.log.error("database unreachable while reading messages", { error: errorMessage(err) });
      return undefined;
    }
    const messages = new Map<string, QueuedMessage>();
    const unreadable = new Set<string>();
    for (const id of ids) {
      try {
        for (const [k, m] of await loadMessages(this.o.db, [id])) messages.set(k, m);
      } catch {
        unreadable.add(id);
      }
    }
    if (unreadable.size === 0) return messages;
    const stuck = claimed.filter((c) => unreadable.has(c.delivery.messageId)).map((c) => c.delivery);
    const delay = retryDelaySeconds(Math.min(...stuck.map((d) => d.attempts)) + 1, this.o.policy);
    try {
      await deferUnreadable(
        this.o.db,
        this.o.owner,
        stuck.map((d) => d.id),
        new Date(Date.now() + delay * 1000),
      );
      this.o.log.error("messages cannot be read: deferred", { ids: [...unreadable] });
    } catch (err) {
      // their leases run out and they are tried again; the readable ones go now all the same
      this.o.log.error("deferring unreadable messages failed", { error: errorMessage(err) });
    }
    return messages;
  }

  private async runGroup(key: string, dest: Destination, claimed: Waiting[]): Promise<void> {
    const messages = await this.readMessages(key, claimed);
    if (!messages) return;
    // a message removed since the claim (queue rm) has nothing left to deliver
    const jobs: Job[] = claimed.flatMap(({ delivery }) => {
      const message = messages.get(delivery.messageId);
      return message ? [{ delivery, message }] : [];
    });
    if (jobs.length === 0) return;
    const courier = this.o.courierFor(jobs[0]!.delivery.target);
    let reports: Awaited<ReturnType<Courier["deliver"]>>;
    try {
      reports = await courier.deliver(jobs);
    } catch (err) {
      // A courier should report, not throw; if it does, nothing is lost: every job is deferred.
      this.o.log.error("courier failed", { destination: key, error: errorMessage(err) });
      reports = jobs.map((j) => ({
        deliveryId: j.delivery.id,
        outcome: "deferred" as const,
        reply: `local error: ${errorMessage(err)}`,
        status: "4.3.0",
        remoteMta: null,
        durationMs: 0,
      }));
    }
    // Slow start: each good round opens one more parallel connection; a round that reached no
    // one halves the limit again.
    if (reports.some((r) => r.outcome !== "deferred"))
      dest.limit = Math.min(dest.limit + 1, this.o.perDestination);
    else dest.limit = Math.max(1, Math.floor(dest.limit / 2));
    const byId = new Map(reports.map((r) => [r.deliveryId, r]));
    try {
      const settled = await settle(
        this.o.db,
        this.o.owner,
        jobs.map((j) => ({ ...j, report: byId.get(j.delivery.id)! })),
        this.o.policy,
        this.o.dsns,
      );
      this.o.onSettled?.(settled);
      for (const s of settled) {
        this.o.log.info("delivery attempt", {
          id: s.message.id,
          rcpt: s.delivery.rcpt,
          host: s.report.remoteMta,
          outcome: s.report.outcome,
          reply: s.report.reply,
          durationMs: Math.round(s.report.durationMs),
        });
      }
      // Settled mail may have produced DSNs: look for work again.
      this.wake();
    } catch (err) {
      // The lease runs out and another round (here or elsewhere) tries again: at least once.
      this.o.log.error("settling deliveries failed", { destination: key, error: errorMessage(err) });
    }
  }
}
