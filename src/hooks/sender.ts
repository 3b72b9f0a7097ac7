// Sends the event copies the hooks are owed: claims a batch (a lease, so each copy goes from one
// node), POSTs them side by side, records what came back. New copies wake it at once (the fan-out
// trigger NOTIFYs); retries wait for their time; at least once, the same webhook-id every time.
import type { Db } from "../db/open.ts";
import { httpReplyText } from "../delivery/webhook.ts";
import { errorMessage, type Logger } from "../log.ts";
import { eventView } from "../queue/events.ts";
import type { RetryPolicy } from "../queue/retry.ts";
import { webhookHeaders } from "./signature.ts";
import {
  type ClaimedHookDelivery,
  claimHookDeliveries,
  type HookAttempt,
  nextHookDueAt,
  settleHookDeliveries,
} from "./store.ts";

export const HOOKS_CHANNEL = "postern_hooks";

/** How long a hook gets copies of events for: then a copy still refused is given up. */
export const HOOK_LIFETIME_SECONDS = 24 * 60 * 60;

export interface HookSenderOptions {
  db: Db;
  owner: string;
  log: Logger;
  /** POSTERN_RETRY_BASE_SECONDS and _MAX_SECONDS, over HOOK_LIFETIME_SECONDS. */
  policy: RetryPolicy;
  listen?(onNotify: () => void): Promise<() => Promise<void>>;
  /** Per POST. */
  timeoutMs?: number;
  batch?: number;
  pollMs?: number;
  onSettled?(counts: { delivered: number; retried: number; failed: number }): void;
}

/** How long a wake-up waits for more copies to come before claiming again. */
const GATHER_MS = 200;

/** A lease outlives a batch: every POST in it is cut off at its timeout. */
const LEASE_SECONDS = 120;

export class HookSender {
  private running = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private unlisten: (() => Promise<void>) | undefined;
  private failures = 0;

  constructor(private readonly o: HookSenderOptions) {}

  async start(): Promise<void> {
    this.running = true;
    this.unlisten = await this.o.listen?.(() => this.wake());
    this.loopDone = this.loop().catch((err) => {
      this.o.log.error("the event webhook loop stopped", { error: errorMessage(err) });
    });
  }

  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Stops claiming; a batch in flight finishes (each POST is bounded by its timeout). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake();
    await this.unlisten?.();
    await this.loopDone;
  }

  private async loop(): Promise<void> {
    const pollMs = this.o.pollMs ?? 5000;
    const batch = this.o.batch ?? 100;
    while (this.running) {
      this.woken = false;
      let sent = 0;
      try {
        sent = await this.sendBatch(batch);
        if (this.failures > 0) this.o.log.info("sending event webhooks again", { after: this.failures });
        this.failures = 0;
      } catch (err) {
        // the database is away: one line per outage, the health check says the rest
        if (this.failures++ === 0)
          this.o.log.error("sending event webhooks failed: retrying", { error: errorMessage(err) });
        if (this.running) await this.sleep(Math.min(500 * 2 ** this.failures, 30_000));
        continue;
      }
      if (!this.running || sent === batch) continue; // a backlog: on at once
      if (sent > 0 || this.woken) {
        // Events come in a stream, a NOTIFY per transaction: gathering them for a moment makes
        // one claim and one settle of many copies rather than of one or two each.
        await Bun.sleep(GATHER_MS);
        continue;
      }
      const next = await nextHookDueAt(this.o.db).catch(() => undefined);
      const ms = next ? Math.min(pollMs, Math.max(0, next.getTime() - Date.now()) + 50) : pollMs;
      if (!this.woken && this.running) await this.sleep(ms);
    }
  }

  /** One batch claimed, POSTed and recorded; how many copies it had. */
  private async sendBatch(batch: number): Promise<number> {
    const claimed = await claimHookDeliveries(this.o.db, this.o.owner, batch, LEASE_SECONDS);
    if (claimed.length === 0) return 0;
    const results = await Promise.all(claimed.map((d) => this.post(d)));
    // Not recorded (the database went away): the lease lapses and the copies go again, same ids.
    const counts = await settleHookDeliveries(this.o.db, this.o.owner, results, this.o.policy);
    this.o.onSettled?.(counts);
    for (const r of results) {
      if (!r.ok)
        this.o.log.info("event webhook refused", {
          hook: r.delivery.hook.id,
          event: r.delivery.event.id,
          attempt: r.delivery.attempts + 1,
          reply: r.reply,
        });
    }
    return claimed.length;
  }

  private async post(delivery: ClaimedHookDelivery): Promise<HookAttempt> {
    const body = JSON.stringify(eventView(delivery.event));
    // one id per event, whichever attempt: receivers drop what they have seen
    const headers = webhookHeaders(delivery.hook.secret, `evt_${delivery.event.id}`, new Date(), body);
    try {
      const res = await fetch(delivery.hook.url, {
        method: "POST",
        body,
        headers: { ...headers, "content-type": "application/json", "user-agent": "Postern" },
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 10_000),
        // the operator chose this URL; a redirect would carry the event where the receiver says
        redirect: "manual",
      });
      await res.body?.cancel();
      return { delivery, ok: res.status >= 200 && res.status < 300, reply: httpReplyText(res) };
    } catch (err) {
      const timedOut = (err as Error).name === "TimeoutError";
      return { delivery, ok: false, reply: timedOut ? "timed out" : errorMessage(err) };
    }
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
}
