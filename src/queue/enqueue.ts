// Writes accepted messages: the message and one delivery row per recipient in one transaction.
// Messages that arrive while a transaction is committing wait and go together in the next one
// (group commit): one WAL flush then serves many sessions, and each caller still learns only
// after the commit that holds its own message.
import type postgres from "postgres";
import { CopiedInsert, copyingClient, copyThen } from "../db/copy-in.ts";
import { isConnectionError } from "../db/errors.ts";
import type { Db, Tx } from "../db/open.ts";
import { deliveries, events, messages, suppressions } from "../db/schema.ts";
import { flatStatement, queryOf, type StatementPart, UnnestedInsert } from "../db/unnest.ts";
import { formatTarget, type Target } from "../domains/targets.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { ReportedBounces } from "./bounce-reports.ts";
import { writtenEvents } from "./events.ts";

export interface NewDelivery {
  rcpt: string;
  target: Target;
  orcpt?: string | undefined;
  notify?: string | undefined;
}

export interface NewMessage {
  id: string;
  direction: "inbound" | "outbound" | "dsn";
  mailFrom: string;
  helo?: string | undefined;
  clientIp?: string | undefined;
  authUser?: string | undefined;
  raw: Uint8Array;
  authResults?: unknown;
  messageIdHeader?: string | undefined;
  subject?: string | undefined;
  envid?: string | undefined;
  ret?: string | undefined;
  deliveries: NewDelivery[];
  /** What a delivery report (this message) says of mail we sent: written with it. */
  reported?: ReportedBounces | undefined;
}

interface Pending {
  message: NewMessage;
  resolve(): void;
  reject(err: unknown): void;
  timer: ReturnType<typeof setTimeout>;
  /** In a transaction already: past the point where it can be taken back. */
  writing: boolean;
  /** Answered with a timeout: never to be written again. */
  expired: boolean;
}

/** The database did not commit a message in time; the session answers 451 and the client retries. */
export class EnqueueTimeout extends Error {
  constructor(
    readonly id: string,
    /** Its transaction was running: it may still commit, and the message then goes out twice. */
    readonly mayCommit: boolean,
  ) {
    super(`message ${id} not committed within the enqueue deadline`);
  }
}

/** The NOTIFY channel that tells schedulers new deliveries are due. */
export const QUEUE_CHANNEL = "postern_queue";

/** Between writes of a message while the database is out of reach. */
const WAIT_FOR_DATABASE_MS = { first: 250, max: 2000 };

/** Upper bound of one group commit, to keep the transaction and its statements small. */
const MAX_BATCH = 64;

/**
 * How long a session waits for its commit. A database that hangs (a lock held, a network gone
 * quiet) would otherwise hold every session until the clients' own 10-minute timeout; past this
 * each gets 451 and retries later. Generous: a commit takes milliseconds.
 */
export const ENQUEUE_DEADLINE_MS = 60_000;

export class Enqueuer {
  private queue: Pending[] = [];
  private flushing = false;

  private readonly onCommitted: (ids: string[], messages: NewMessage[]) => void;
  private readonly deadlineMs: number;
  private readonly origin: string;
  /** On postgres.js, big batches go by COPY (copyMessages). */
  private readonly copying: postgres.Sql | undefined;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    o: {
      /** Told after each commit, with the ids and the messages it held. */
      onCommitted?: (ids: string[], messages: NewMessage[]) => void;
      deadlineMs?: number;
      /** Who commits, as the queue's notifications say (see writeMessages). */
      origin?: string;
    } = {},
  ) {
    this.onCommitted = o.onCommitted ?? (() => {});
    this.deadlineMs = o.deadlineMs ?? ENQUEUE_DEADLINE_MS;
    this.origin = o.origin ?? "";
    this.copying = copyingClient(db);
  }

  enqueue(message: NewMessage): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const pending: Pending = {
      message,
      writing: false,
      expired: false,
      resolve: () => {
        clearTimeout(pending.timer);
        resolve();
      },
      reject: (err) => {
        clearTimeout(pending.timer);
        reject(err);
      },
      timer: setTimeout(() => this.expire(pending), this.deadlineMs),
    };
    this.queue.push(pending);
    // flush ends in a logged error at worst; the messages it held then get their 451 at the deadline
    if (!this.flushing)
      this.flush().catch((err) => this.log.error("enqueue failed", { error: errorMessage(err) }));
    return promise;
  }

  // Not yet written: taken out, so it is never committed after its 451. Being written: the
  // transaction cannot be recalled, and whether it commits is for the database to say.
  private expire(pending: Pending): void {
    pending.expired = true;
    const at = this.queue.indexOf(pending);
    if (at >= 0) this.queue.splice(at, 1);
    this.log.warn("enqueue deadline passed: answered 451", {
      id: pending.message.id,
      // in a transaction that may still commit: then the client's retry makes a second copy
      mayCommit: pending.writing,
    });
    pending.reject(new EnqueueTimeout(pending.message.id, pending.writing));
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        for (const p of batch) p.writing = true;
        try {
          await this.write(batch.map((p) => p.message));
          this.committed(batch);
        } catch (err) {
          // One bad message must not fail its neighbours: each on its own. What a batch of one
          // failed with is already known.
          for (const p of batch) await this.writeAlone(p, batch.length === 1 ? err : undefined);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Writes one message until the database says yes, or a no that is not about reaching it. While
   * it is out of reach the write is tried again until the deadline answers 451: a COMMIT cut off
   * with its connection may have gone through, and asking again is what tells (the message's own
   * id is then taken), so the client hears 250 once, not 451 and then a second copy.
   */
  private async writeAlone(p: Pending, failed: unknown): Promise<void> {
    let err = failed;
    for (let tries = 0; !p.expired; tries++) {
      if (tries > 0 || err === undefined) {
        try {
          await this.write([p.message]);
          return this.committed([p]);
        } catch (e) {
          if (isOwnEarlierCommit(e)) return this.committed([p]);
          err = e;
        }
      }
      if (!isConnectionError(err)) {
        this.log.error("enqueue failed", { id: p.message.id, error: errorMessage(err) });
        return p.reject(err);
      }
      await Bun.sleep(Math.min(WAIT_FOR_DATABASE_MS.first * 2 ** tries, WAIT_FOR_DATABASE_MS.max));
    }
  }

  private committed(batch: Pending[]): void {
    for (const p of batch) p.resolve();
    this.onCommitted(
      batch.map((p) => p.message.id),
      batch.map((p) => p.message),
    );
  }

  private async write(batch: NewMessage[]): Promise<void> {
    if (this.copying && (await copyMessages(this.copying, batch, this.origin))) return;
    await writeMessages(this.db, batch, this.origin);
  }
}

/** A mailbox delivery is done by being written: the mailbox is this table. */
export function keptOnWrite(target: Target): boolean {
  return target.kind === "mailbox";
}

/** Some delivery of these messages waits for the scheduler (not all were done by being written). */
export function queuesWork(batch: readonly NewMessage[]): boolean {
  return batch.some((m) => m.deliveries.some((d) => !keptOnWrite(d.target)));
}

/**
 * Inserts messages, their deliveries, their events and the suppressions they report as one
 * statement (data-modifying CTEs): one round trip instead of one per table, which is most of
 * what a commit costs on the hot path. Its text is the same for any batch (unnested arrays), so it
 * is prepared once. Works inside a caller's transaction (settle writes DSNs this way) or alone,
 * as its own transaction. An event exists if and only if its message does.
 */
export async function writeMessages(db: Db | Tx, batch: NewMessage[], origin = ""): Promise<void> {
  const now = new Date();
  await db.execute(
    flatStatement([
      "with m as (",
      ...messageInsert.parts(messageRows(batch, now)),
      "), ",
      ...afterMessages(batch, origin, now),
    ]),
  );
}

/**
 * The same rows with the messages copied in binary (copy-in.ts) and the rest by the statement
 * without its first CTE, in one transaction: four round trips more than the statement, so only
 * for batches of COPY_MIN_BATCH or more, and not past COPY_MAX_OCTETS of bodies (the COPY's guard
 * would have to wait longer). False when the batch is not for COPY: write it with writeMessages.
 */
export async function copyMessages(
  client: postgres.Sql,
  batch: NewMessage[],
  origin: string,
  guardMs = COPY_GUARD_MS,
): Promise<boolean> {
  if (batch.length < COPY_MIN_BATCH || batch.reduce((n, m) => n + m.raw.length, 0) > COPY_MAX_OCTETS)
    return false;
  const now = new Date();
  const data = messageCopy.data(messageRows(batch, now));
  if (data === undefined) return false;
  await copyThen(
    client,
    { statement: messageCopy.statement, data },
    queryOf(["with ", ...afterMessages(batch, origin, now)]),
    guardMs,
  );
  return true;
}

/** Measured live (bench/RESULTS.md): by 4-8 messages a commit, COPY costs Bun and PostgreSQL less. */
const COPY_MIN_BATCH = 4;
const COPY_MAX_OCTETS = 8 * 1024 * 1024;
/** A COPY of a batch ends in milliseconds; this long only a refused or cut-off one waits. */
const COPY_GUARD_MS = 2000;

function messageRows(batch: NewMessage[], now: Date) {
  return batch.map((m) => ({ ...m, receivedAt: now, size: m.raw.length }));
}

/** The accept statement past its messages: deliveries, events, suppressions and the wake-up. */
function afterMessages(batch: NewMessage[], origin: string, now: Date): StatementPart[] {
  const deliveryRows = batch.flatMap((m) =>
    m.deliveries.map((d) => {
      const kept = keptOnWrite(d.target);
      return {
        messageId: m.id,
        rcpt: d.rcpt,
        orcpt: d.orcpt,
        notify: d.notify,
        target: formatTarget(d.target),
        status: kept ? ("delivered" as const) : ("queued" as const),
        deliveredAt: kept ? now : null,
        nextAttemptAt: now,
      };
    }),
  );
  return [
    "d as (",
    ...deliveryInsert.parts(deliveryRows),
    "), e as (",
    ...eventInsert.parts(writtenEvents(batch, now)),
    "), s as (",
    ...suppressionInsert.parts(
      batch.flatMap((m) => (m.reported?.suppressions ?? []).map((s) => ({ at: now, ...s }))),
    ),
    // pg_notify wakes every scheduler on this database once the statement's transaction commits;
    // its payload names the committer, whose own scheduler was woken at once and skips it.
    " on conflict do nothing) select pg_notify(",
    { value: QUEUE_CHANNEL },
    ", ",
    { value: origin },
    ") where ",
    { value: queuesWork(batch) },
  ];
}

const MESSAGE_COLUMNS = [
  "id",
  "receivedAt",
  "direction",
  "mailFrom",
  "helo",
  "clientIp",
  "authUser",
  "size",
  "raw",
  "authResults",
  "messageIdHeader",
  "subject",
  "envid",
  "ret",
] as const;
const DELIVERY_COLUMNS = [
  "messageId",
  "rcpt",
  "orcpt",
  "notify",
  "target",
  "status",
  "deliveredAt",
  "nextAttemptAt",
] as const;
export const EVENT_COLUMNS = [
  "type",
  "at",
  "messageId",
  "messageIdHeader",
  "mailFrom",
  "rcpt",
  "attempt",
  "mx",
  "replyCode",
  "replyEnhanced",
  "replyText",
  "class",
  "tls",
] as const;
export const SUPPRESSION_COLUMNS = ["domain", "address", "reason", "code", "messageId", "at"] as const;
const messageInsert = new UnnestedInsert(messages, MESSAGE_COLUMNS);
const messageCopy = new CopiedInsert(messages, MESSAGE_COLUMNS);
const deliveryInsert = new UnnestedInsert(deliveries, DELIVERY_COLUMNS);
const eventInsert = new UnnestedInsert(events, EVENT_COLUMNS);
const suppressionInsert = new UnnestedInsert(suppressions, SUPPRESSION_COLUMNS);

/**
 * The message id is already taken: ids are ours and unique, so only an earlier commit of this
 * very message (whose outcome was lost with the connection) can have taken it.
 */
function isOwnEarlierCommit(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    const pg = e as { code?: string; constraint_name?: string; constraint?: string };
    if (pg.code === "23505") return (pg.constraint_name ?? pg.constraint) === "messages_pkey";
  }
  return false;
}
