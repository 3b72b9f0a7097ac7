// Sends events to the hooks. Every GATHER_MS the hooks no node holds are leased, and each gets a
// run of its own: it reads its next events past its cursor, POSTs them side by side and records
// the batch (cursor moved, refused events kept as copies to retry), again while batches come full.
// A hook's copies due again (refused before) are claimed and POSTed in a run of their own too. So
// a receiver that hangs holds back its own events only. A run that fails gives its lease back,
// and this node waits a while, growing, before starting it again. At least once, the same
// webhook-id every time.
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
  hooksWithDueCopies,
  type PostResult,
  readStream,
  recordStream,
  releaseHook,
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
 * A lease outlives a batch: every POST is cut off at its timeout, and a full batch is
 * batch / inFlight waves of them (5 x 10 s by default) for a hook that never answers.
 */
const LEASE_SECONDS = 120;

/** A hook's stream of events, or its copies due again: each is a run of its own. */
type RunKind = "stream" | "retries";

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
  /** The hooks this node is sending batches to now, by id. */
  private readonly streams = new Map<number, Promise<void>>();
  /** The hooks whose due copies this node is POSTing again now, by id. */
  private readonly retries = new Map<number, Promise<void>>();
  /** Runs whose last try failed, by kind and hook: how many in a row, and when to try again. */
  private readonly failing: Record<RunKind, Map<number, { runs: number; until: number }>> = {
    stream: new Map(),
    retries: new Map(),
  };

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

  /** Stops; the batches in flight finish (each POST is bounded by its timeout). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake();
    await this.loopDone;
    this.poster.close();
  }

  private async loop(): Promise<void> {
    // a batch's read and record cost about as much as a hundred POSTs: batches are made big
    const batch = this.o.batch ?? 500;
    while (this.running) {
      try {
        await this.startStreams(batch);
        await this.startRetries(batch);
        this.recovered();
      } catch (err) {
        this.failed(err);
        if (this.running) await this.nap.sleep(Math.min(500 * 2 ** this.failures, 30_000));
        continue;
      }
      if (this.running) await this.nap.sleep(GATHER_MS);
    }
    await Promise.all([...this.streams.values(), ...this.retries.values()]);
  }

  /** The database is away: one line per outage, the health check says the rest. */
  private failed(err: unknown): void {
    if (this.failures++ === 0)
      this.o.log.error("sending event webhooks failed: retrying", { error: errorMessage(err) });
  }

  private recovered(): void {
    if (this.failures > 0) this.o.log.info("sending event webhooks again", { after: this.failures });
    this.failures = 0;
  }

  /**
   * A run for each hook with events waiting that no node holds and this one is neither sending to
   * nor waiting to try again.
   */
  private async startStreams(batch: number): Promise<void> {
    if (!(await streamsWaiting(this.o.db))) return;
    const skip = [...this.streams.keys()].concat(
      [...this.failing.stream.keys()].filter((id) => this.paused("stream", id)),
    );
    for (const hook of await claimHooks(this.o.db, this.o.owner, LEASE_SECONDS, skip))
      this.run(this.streams, hook.id, "stream", () => this.sendStream(hook, batch));
  }

  /** Starts `send` as the run of `kind` for hook `id`, kept in `runs` while it lasts. */
  private run(
    runs: Map<number, Promise<void>>,
    hook: number,
    kind: RunKind,
    send: () => Promise<void>,
  ): void {
    const run = `${kind} ${hook}`;
    const failing = this.failing[kind];
    const done = send()
      .then(
        () => {
          const failed = failing.get(hook);
          if (!failed) return;
          failing.delete(hook);
          this.o.log.info("an event webhook run went through again", { run, after: failed.runs });
        },
        (err) => {
          // one line, then the run waits, longer each time it fails again
          const runs = (failing.get(hook)?.runs ?? 0) + 1;
          failing.set(hook, { runs, until: Date.now() + Math.min(500 * 2 ** runs, 30_000) });
          if (runs === 1)
            this.o.log.error("an event webhook run failed: trying again later", {
              run,
              error: errorMessage(err),
            });
        },
      )
      .finally(() => runs.delete(hook));
    runs.set(hook, done);
  }

  private paused(kind: RunKind, hook: number): boolean {
    return (this.failing[kind].get(hook)?.until ?? 0) > Date.now();
  }

  /**
   * Batches of the hook's stream while they come full. The last record gives the lease back; a
   * run that ends without one (stopped, failed) gives it back itself, when the database lets it.
   */
  private async sendStream(first: Hook, batch: number): Promise<void> {
    let hook = first;
    let leased = true;
    const target = hookTarget(hook);
    try {
      while (this.running) {
        const { events, next } = await readStream(this.o.db, hook, batch);
        const sent = await this.postAll(events, (event) => this.post(target, event));
        const full = events.length === batch && this.running;
        const counts = await recordStream(this.o.db, this.o.owner, hook, next, sent, this.o.policy, {
          renewLeaseSeconds: full ? LEASE_SECONDS : undefined,
        });
        leased = full && counts.held;
        this.o.onSettled?.({ delivered: counts.delivered, retried: counts.retried, failed: 0 });
        const refused = sent.filter((x) => !x.result.ok);
        if (refused.length > 0)
          this.o.log.info("event webhook refused: kept to retry", {
            hook: hook.id,
            count: refused.length,
            reply: refused.at(-1)!.result.reply,
          });
        if (!leased) return;
        hook = { ...hook, cursorTx: next.tx, cursorId: next.id };
      }
    } finally {
      // unreleased, the lease lapses on its own (LEASE_SECONDS)
      if (leased) await releaseHook(this.o.db, this.o.owner, hook.id).catch(() => {});
    }
  }

  /** A run for each hook with copies due again that this node is not POSTing again already. */
  private async startRetries(batch: number): Promise<void> {
    for (const id of await hooksWithDueCopies(this.o.db)) {
      if (this.retries.has(id) || this.paused("retries", id)) continue;
      this.run(this.retries, id, "retries", () => this.sendRetries(id, batch));
    }
  }

  /** Batches of the hook's due copies while they come full. */
  private async sendRetries(hookId: number, batch: number): Promise<void> {
    while (this.running) {
      const claimed = await claimHookDeliveries(this.o.db, this.o.owner, hookId, batch, LEASE_SECONDS);
      if (claimed.length === 0) return;
      // the one hook's: its URL and key are read once for the batch
      const target = hookTarget(claimed[0]!.hook);
      const results = (await this.postAll(claimed, (delivery) => this.post(target, delivery.event))).map(
        ({ event: delivery, result }) => ({ delivery, ...result }),
      );
      // Not recorded (the database went away): the lease lapses and the copies go again, same ids.
      const counts = await settleHookDeliveries(this.o.db, this.o.owner, results, this.o.policy);
      this.o.onSettled?.(counts);
      for (const r of results.filter((x) => !x.ok))
        this.o.log.info("event webhook refused again", {
          hook: hookId,
          event: r.delivery.event.id,
          attempt: r.delivery.attempts + 1,
          reply: r.reply,
        });
      if (claimed.length < batch) return;
    }
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
