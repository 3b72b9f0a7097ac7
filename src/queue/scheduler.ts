// The delivery loop of one `serve` process. It claims due deliveries, groups them by destination,
// hands each group to its courier within a global and a per-destination concurrency limit, and
// settles what comes back. New mail wakes it at once (LISTEN/NOTIFY on the queue channel);
// polling is only the fallback, and the way deferred deliveries come due.

import { sql } from "drizzle-orm";
import { isConnectionError } from "../db/errors.ts";
import type { Db } from "../db/open.ts";
import { type Courier, destinationOf, type Job } from "../delivery/courier.ts";
import { errorMessage, type Logger } from "../log.ts";
import {
  type ClaimedTarget,
  claimDue,
  deferUnreadable,
  loadMessages,
  nextDueAt,
  type QueuedMessage,
  releaseLeases,
  releaseUnheld,
  renewLeases,
} from "./claim.ts";
import { Dispatcher, type DispatchLimits, type Group, type Waiting } from "./dispatcher.ts";
import { freeAllLeases, HEARTBEAT_MS, heartbeat, retire, TAKEOVER_QUIET_MS } from "./liveness.ts";
import { Nap } from "./nap.ts";
import { retryDelaySeconds } from "./retry.ts";
import { type DsnWriter, type SettledDelivery, type SettlePolicy, settle } from "./settle.ts";

/** Deliveries claimed in one round at most. */
const MAX_CLAIM = 500;

/** Wake a little after the next retry is due rather than before: early finds nothing. */
const RETRY_SLACK_MS = 25;

/** Between claims while the database does not answer: the first retries soon, then less often. */
const OUTAGE_BACKOFF_MS = { first: 500, max: 5000 };

/**
 * The dispatch limits (bodies are read when their group starts, so the byte limits bound memory
 * however big and many the claimed messages are), and the loop's own settings.
 */
export interface SchedulerOptions extends DispatchLimits {
  db: Db;
  /** Names this process in lease_owner. */
  owner: string;
  courierFor(target: ClaimedTarget): Courier;
  policy: SettlePolicy;
  dsns: DsnWriter;
  log: Logger;
  /** How long a claim is ours; renewed every third of it while the delivery is waiting or running. */
  leaseSeconds: number;
  pollMs: number;
  /** How long `stop` waits for groups in flight. */
  stopGraceMs: number;
  /** Subscribes to the queue channel; resolves to the unsubscribe function. */
  listen?(onNotify: () => void): Promise<() => Promise<void>>;
  /**
   * No other process can hold leases (the embedded database, under its lock): whatever an earlier
   * process left leased is free at start, not when its lease runs out.
   */
  soleWorker?: boolean;
  /** Told of each batch of attempts once its settling transaction has committed (metrics). */
  onSettled?(settled: SettledDelivery[]): void;
}

export class Scheduler {
  private running = false;
  private readonly dispatcher: Dispatcher;
  private readonly groups = new Set<Promise<void>>();
  private readonly nap = new Nap();
  private woken = false;
  private unlisten: (() => Promise<void>) | undefined;
  private loopDone: Promise<void> | undefined;
  /** Claimed and not yet settled: the deliveries whose leases we keep alive. */
  private readonly held = new Set<number>();
  private renewTimer: ReturnType<typeof setInterval> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  /** Claims are failing (the database is away) since this attempt; 0 when they work. */
  private claimFailures = 0;
  /**
   * Something was left leased to us that nothing here holds: a claim whose answer was lost, a
   * group that could not read its messages or record its outcome. Given back at the next claim.
   */
  private strays = false;
  /**
   * The last claim may have left due rows behind (it took all it had room for): a group that
   * ends makes room for them. Otherwise new mail and DSNs wake us by their notification.
   */
  private backlog = false;
  /** Set once `stop` gives up on groups still running: they stop retrying their settle. */
  private abandoned = false;
  /** When this process last failed to reach the database, or started (ms since epoch). */
  private lastTrouble = 0;
  /** The heartbeat in flight: `stop` waits for it, or it would bring back the row it removes. */
  private beating: Promise<void> | undefined;

  constructor(private readonly o: SchedulerOptions) {
    this.dispatcher = new Dispatcher(o);
  }

  async start(): Promise<void> {
    if (this.o.soleWorker) await freeAllLeases(this.o.db);
    // alive before the first claim, or another node could take what this one claims
    await heartbeat(this.o.db, this.o.owner);
    // a process (re)started amid trouble gives the others time to renew before judging them
    this.lastTrouble = Date.now();
    this.running = true;
    this.unlisten = await this.o.listen?.(() => this.wake());
    this.loopDone = this.loop().catch((err) => {
      this.o.log.error("the delivery loop stopped", { error: errorMessage(err) });
    });
    this.renewTimer = setInterval(() => void this.renewLeases(), (this.o.leaseSeconds * 1000) / 3);
    this.heartbeatTimer = setInterval(() => {
      this.beating ??= heartbeat(this.o.db, this.o.owner)
        .catch((err) => {
          this.lastTrouble = Date.now();
          this.o.log.debug("heartbeat failed", { error: errorMessage(err) });
        })
        .finally(() => {
          this.beating = undefined;
        });
    }, HEARTBEAT_MS);
  }

  /** New mail is due: claim now instead of at the next poll. */
  wake(): void {
    this.woken = true;
    this.nap.wake();
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
    this.abandoned = true;
    clearInterval(this.renewTimer);
    clearInterval(this.heartbeatTimer);
    await this.beating;
    const unstarted = this.dispatcher.takeAllWaiting().map((w) => w.delivery.id);
    this.held.clear();
    try {
      await releaseLeases(this.o.db, this.o.owner, unstarted);
      // what a group still running holds is free at once for the others: we are gone
      await retire(this.o.db, this.o.owner);
    } catch (err) {
      this.o.log.warn("giving back leases failed: they are free once this process's heartbeat lapses", {
        error: errorMessage(err),
      });
    }
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
    const dropped = this.dispatcher.dropLost(lost);
    for (const id of lost) this.held.delete(id);
    if (dropped > 0) this.o.log.warn("leases lost: deliveries left to their new holder", { count: dropped });
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.woken = false;
      // Claim about what can start soon: a claimed row waits in memory, and its lease is running.
      const room = Math.min(
        MAX_CLAIM,
        this.o.concurrency * this.o.jobsPerGroup - this.dispatcher.waitingCount,
      );
      try {
        if (this.strays || this.claimFailures > 0) {
          // cleared before the await: a group that leaves strays meanwhile sets it again
          this.strays = false;
          await releaseUnheld(this.o.db, this.o.owner, [...this.held]).catch((err) => {
            this.strays = true;
            throw err;
          });
        }
        const claimed = room > 0 ? await this.claim(room) : 0;
        this.backlog = claimed >= room;
        if (this.claimFailures > 0)
          this.o.log.info("claiming deliveries again", { after: this.claimFailures });
        this.claimFailures = 0;
      } catch (err) {
        this.lastTrouble = Date.now();
        // One line per outage, not one per try: the database health check says the rest.
        if (this.claimFailures++ === 0)
          this.o.log.error("claiming deliveries failed: retrying", { error: errorMessage(err) });
        const ms = Math.min(OUTAGE_BACKOFF_MS.first * 2 ** (this.claimFailures - 1), OUTAGE_BACKOFF_MS.max);
        if (this.running) await this.nap.sleep(ms);
        continue;
      }
      this.dispatch();
      if (this.woken || !this.running) continue;
      // Full: a finishing group wakes us. Otherwise sleep until the next retry is due.
      const ms = room > 0 ? await this.untilNextDue() : this.o.pollMs;
      if (!this.woken && this.running) await this.nap.sleep(ms);
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

  /** Claims up to `limit` due deliveries; says how many it took. */
  private async claim(limit: number): Promise<number> {
    // Held before the claim: a group settling while we wait below takes its ids out of `held`,
    // and a row our claim took back from it would look new.
    const heldBefore = new Set(this.held);
    const takeOver = Date.now() - this.lastTrouble > TAKEOVER_QUIET_MS;
    const claimed = await claimDue(this.o.db, this.o.owner, limit, this.o.leaseSeconds, takeOver);
    if (claimed.length === 0) return 0;
    const retaken: number[] = [];
    for (const delivery of claimed) {
      // Our own lease ran out (the database was away) and this claim took the row back: it is
      // already waiting or running here, and the claim just renewed the lease.
      if (heldBefore.has(delivery.id) || this.held.has(delivery.id)) {
        retaken.push(delivery.id);
        continue;
      }
      this.held.add(delivery.id);
      this.dispatcher.add(destinationOf(delivery.target, delivery.rcpt), { delivery });
    }
    // A retaken row whose group ended meanwhile without settling it: nobody works on it now.
    await releaseLeases(
      this.o.db,
      this.o.owner,
      retaken.filter((id) => !this.held.has(id)),
    );
    return claimed.length;
  }

  /** Starts every group the dispatcher allows now; each one, when it ends, looks again. */
  private dispatch(): void {
    for (const group of this.dispatcher.startable()) {
      const run = this.runGroup(group)
        // a group's failures are reported inside it; anything else is a bug, logged, not fatal
        .catch((err) =>
          this.o.log.error("delivery group failed", { destination: group.key, error: errorMessage(err) }),
        )
        .finally(() => {
          for (const c of group.jobs) this.held.delete(c.delivery.id);
          this.dispatcher.finished(group);
          this.groups.delete(run);
          if (this.running) this.dispatch();
        });
      this.groups.add(run);
    }
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

  private async runGroup(group: Group): Promise<void> {
    const { key, jobs: claimed } = group;
    const messages = await this.readMessages(key, claimed);
    if (!messages) {
      this.strays = true;
      return;
    }
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
    this.dispatcher.reached(
      group,
      reports.some((r) => r.outcome !== "deferred"),
    );
    const byId = new Map(reports.map((r) => [r.deliveryId, r]));
    const settled = await this.settleSurely(
      key,
      jobs.map((j) => ({ ...j, report: byId.get(j.delivery.id)! })),
    );
    if (settled) {
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
      // A deferral may be due before the loop's next look. DSNs it wrote wake every scheduler by
      // their notification, like new mail.
      if (this.backlog || settled.some((s) => s.nextAttemptAt)) this.wake();
    }
  }

  /**
   * Records what the attempts did, trying again while the database is away: the mail went (or
   * did not), and forgetting that would send it again. The deliveries stay held meanwhile, their
   * leases renewed whenever the database answers. A settle whose COMMIT broke off but went
   * through is harmless to repeat: it only touches rows still leased to us, and it cleared them.
   * Given up only once our lease could have run out, or on a stop that no longer waits.
   */
  private async settleSurely(
    key: string,
    jobs: Parameters<typeof settle>[2],
  ): Promise<SettledDelivery[] | undefined> {
    const giveUpAt = Date.now() + this.o.leaseSeconds * 1000;
    for (let failures = 0; ; failures++) {
      try {
        const settled = await settle(this.o.db, this.o.owner, jobs, this.o.policy, this.o.dsns);
        if (failures > 0) this.o.log.info("settled after retrying", { destination: key, failures });
        return settled;
      } catch (err) {
        if (failures === 0)
          this.o.log.error("settling deliveries failed: retrying", {
            destination: key,
            error: errorMessage(err),
          });
        // only an unreachable database (or a lost race between transactions) is worth waiting out
        if (this.abandoned || Date.now() >= giveUpAt || !isTransient(err)) {
          // the lease runs out and another round (here or elsewhere) tries again: at least once
          this.o.log.error("settling deliveries given up", { destination: key, failures: failures + 1 });
          this.strays = true;
          return undefined;
        }
        await Bun.sleep(Math.min(OUTAGE_BACKOFF_MS.first * 2 ** failures, OUTAGE_BACKOFF_MS.max));
      }
    }
  }
}

/** Worth trying again: the database out of reach, or a serialization failure or deadlock. */
function isTransient(err: unknown): boolean {
  if (isConnectionError(err)) return true;
  for (let e = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (code === "40001" || code === "40P01") return true;
  }
  return false;
}
