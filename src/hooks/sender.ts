// Sends events to the hooks. Each round: the hooks no node holds are leased, each reads its next
// events past its cursor and POSTs them side by side, and the batch is recorded (cursor moved,
// refused events kept as copies to retry); then the copies due again are claimed and POSTed.
// At least once, the same webhook-id every time. Events are read every GATHER_MS while they come.
import type { Db } from "../db/open.ts";
import { httpReplyText } from "../delivery/webhook.ts";
import { errorMessage, type Logger } from "../log.ts";
import { HttpPoster } from "../net/http-poster.ts";
import { eventView } from "../queue/events.ts";
import { Nap } from "../queue/nap.ts";
import type { RetryPolicy } from "../queue/retry.ts";
import { type WebhookSigner, webhookSigner } from "./signature.ts";
import {
  claimHookDeliveries,
  claimHooks,
  type Hook,
  type HookEvent,
  nextHookDueAt,
  type PostResult,
  readStream,
  recordStream,
  settleHookDeliveries,
  streamsWaiting,
} from "./store.ts";

/** How long a hook gets copies of events for: then a copy still refused is given up. */
export const HOOK_LIFETIME_SECONDS = 24 * 60 * 60;

export interface HookSenderOptions {
  db: Db;
  owner: string;
  log: Logger;
  /** POSTERN_RETRY_BASE_SECONDS and _MAX_SECONDS, over HOOK_LIFETIME_SECONDS. */
  policy: RetryPolicy;
  /** Roots trusted besides the system's for https hooks (POSTERN_EXTRA_CA_FILE). */
  extraRoots?: readonly string[];
  /** Per POST. */
  timeoutMs?: number;
  /** Events per hook per round, and retried copies per round. */
  batch?: number;
  /** POSTs in flight to one hook at a time (each its own connection). */
  inFlight?: number;
  onSettled?(counts: { delivered: number; retried: number; failed: number }): void;
}

/** Between rounds that found less than a full batch: events gather meanwhile, for one read. */
const GATHER_MS = 200;

/**
 * A lease outlives a round: every POST is cut off at its timeout, and a round of a full batch
 * is batch / inFlight waves of them (5 x 10 s by default). A hook that never answers holds the
 * round that long, the other hooks' too.
 */
const LEASE_SECONDS = 120;

/** Where a hook's POSTs go and how they are signed: made once for a batch of its events. */
interface HookTarget {
  /** Undefined for a URL that does not parse (a row edited by hand): that hook's failure alone. */
  url: URL | undefined;
  text: string;
  sign: WebhookSigner;
}

function hookTarget(hook: Pick<Hook, "url" | "secret">): HookTarget {
  return { url: URL.parse(hook.url) ?? undefined, text: hook.url, sign: webhookSigner(hook.secret) };
}

export class HookSender {
  private running = false;
  private loopDone: Promise<void> | undefined;
  private readonly nap = new Nap();
  private failures = 0;
  private readonly poster: HttpPoster;

  constructor(private readonly o: HookSenderOptions) {
    this.poster = new HttpPoster({ extraRoots: o.extraRoots });
  }

  start(): void {
    this.running = true;
    this.loopDone = this.loop().catch((err) => {
      this.o.log.error("the event webhook loop stopped", { error: errorMessage(err) });
    });
  }

  /** The database is back: go on at once. */
  wake(): void {
    this.nap.wake();
  }

  /** Stops; a round in flight finishes (each POST is bounded by its timeout). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake();
    await this.loopDone;
    this.poster.close();
  }

  private async loop(): Promise<void> {
    // a round's reads and record cost about as much as a hundred POSTs: rounds are made big
    const batch = this.o.batch ?? 500;
    while (this.running) {
      let full = false;
      try {
        full = (await this.sendStreams(batch)) || (await this.sendRetries(batch));
        if (this.failures > 0) this.o.log.info("sending event webhooks again", { after: this.failures });
        this.failures = 0;
      } catch (err) {
        // the database is away: one line per outage, the health check says the rest
        if (this.failures++ === 0)
          this.o.log.error("sending event webhooks failed: retrying", { error: errorMessage(err) });
        if (this.running) await this.nap.sleep(Math.min(500 * 2 ** this.failures, 30_000));
        continue;
      }
      if (this.running && !full) await this.nap.sleep(GATHER_MS);
    }
  }

  /** One batch of every free hook's stream; true when some hook had a full batch (more may wait). */
  private async sendStreams(batch: number): Promise<boolean> {
    if (!(await streamsWaiting(this.o.db))) return false;
    const held = await claimHooks(this.o.db, this.o.owner, LEASE_SECONDS);
    const full = await Promise.all(
      held.map(async (hook) => {
        const { events, next } = await readStream(this.o.db, hook, batch);
        const target = hookTarget(hook);
        const sent = await this.postAll(events, (event) => this.post(target, event));
        const counts = await recordStream(this.o.db, this.o.owner, hook, next, sent, this.o.policy);
        this.o.onSettled?.({ ...counts, failed: 0 });
        const refused = sent.filter((x) => !x.result.ok);
        if (refused.length > 0)
          this.o.log.info("event webhook refused: kept to retry", {
            hook: hook.id,
            count: refused.length,
            reply: refused.at(-1)!.result.reply,
          });
        return events.length === batch;
      }),
    );
    return full.some(Boolean);
  }

  /** The copies due again; true when the batch was full. */
  private async sendRetries(batch: number): Promise<boolean> {
    const due = await nextHookDueAt(this.o.db);
    if (!due || due.getTime() > Date.now()) return false;
    const claimed = await claimHookDeliveries(this.o.db, this.o.owner, batch, LEASE_SECONDS);
    const results = (
      await this.postAll(claimed, (delivery) => this.post(hookTarget(delivery.hook), delivery.event))
    ).map(({ event: delivery, result }) => ({ delivery, ...result }));
    // Not recorded (the database went away): the lease lapses and the copies go again, same ids.
    const counts = await settleHookDeliveries(this.o.db, this.o.owner, results, this.o.policy);
    this.o.onSettled?.(counts);
    for (const r of results.filter((x) => !x.ok))
      this.o.log.info("event webhook refused again", {
        hook: r.delivery.hook.id,
        event: r.delivery.event.id,
        attempt: r.delivery.attempts + 1,
        reply: r.reply,
      });
    return claimed.length === batch;
  }

  /** Each of `items` POSTed by `post`, at most `inFlight` at a time; in the order given. */
  private async postAll<T>(
    items: readonly T[],
    post: (item: T) => Promise<PostResult>,
  ): Promise<{ event: T; result: PostResult }[]> {
    const results = new Array<{ event: T; result: PostResult }>(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const at = next++;
        results[at] = { event: items[at]!, result: await post(items[at]!) };
      }
    };
    const workers = Math.min(Math.max(1, this.o.inFlight ?? 100), items.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return results;
  }

  private async post(target: HookTarget, event: HookEvent): Promise<PostResult> {
    if (!target.url) return { ok: false, reply: `not a URL: ${target.text.slice(0, 200)}` };
    const body = JSON.stringify(eventView(event));
    // one id per event, whichever attempt: receivers drop what they have seen
    const headers = target.sign(`evt_${event.id}`, new Date(), body);
    try {
      // a redirect is reported, not followed: the operator chose this URL, not the receiver
      const reply = await this.poster.post(
        target.url,
        { ...headers, "Content-Type": "application/json", "User-Agent": "Postern" },
        body,
        this.o.timeoutMs ?? 10_000,
      );
      return { ok: reply.status >= 200 && reply.status < 300, reply: httpReplyText(reply) };
    } catch (err) {
      return { ok: false, reply: errorMessage(err) };
    }
  }
}
