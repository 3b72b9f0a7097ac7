// The gateway's metrics, made once in serve.ts and handed to the parts that count: the SMTP
// listeners (connections, sessions, AUTH failures), the session backend (messages received), the
// enqueuer and the scheduler (delivery outcomes and latency), the DSN writer, the DNS resolver.
// The queue gauges are read from the database at scrape time. Every label comes from a small
// fixed set: a port kind, a target kind, a status, a DSN action, a DNS record type.
import { count, inArray, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { deliveries, PENDING_STATUSES } from "../db/schema.ts";
import type { RecordType } from "../dns/message.ts";
import { TARGET_KINDS, type Target } from "../domains/targets.ts";
import type { AuthCheckKind } from "../mail/authcheck.ts";
import type { DsnAction } from "../mail/dsn.ts";
import type { ClaimedTarget } from "../queue/claim.ts";
import type { NewMessage } from "../queue/enqueue.ts";
import type { SettledDelivery } from "../queue/settle.ts";
import { R, type Reply } from "../smtp/reply.ts";
import type { PortKind } from "../smtp/session.ts";
import { Registry } from "./registry.ts";

export const PORTS = ["smtp", "submission", "submissions"] as const satisfies readonly PortKind[];

export const SESSION_OUTCOMES = [
  "quit",
  "timeout",
  "error_limit",
  "closed",
  "refused_limit",
  "shutdown",
  "tls_failed",
] as const;
/**
 * How an SMTP connection ended: `quit` (221 to QUIT), `timeout` (421 4.4.2, or a TLS handshake
 * that never finished), `error_limit` (closed by us for client errors: too many errors or AUTH
 * failures, flooding), `closed` (the client went away without QUIT), `refused_limit` (refused at
 * connect: too many connections), `shutdown` (the server stopped), `tls_failed` (TLS handshake failed).
 */
export type SessionOutcome = (typeof SESSION_OUTCOMES)[number];

/** Label values of `target`: the kinds, and `other` for a stored target that no longer parses. */
export type TargetLabel = (typeof TARGET_KINDS)[number] | "other";

const DSN_ACTIONS = ["failed", "delayed", "delivered"] as const satisfies readonly DsnAction[];
const DNS_TYPES = ["A", "AAAA", "MX", "TXT", "PTR", "CNAME"] as const satisfies readonly RecordType[];
const AUTH_CHECK_KINDS = ["verified", "checked", "reused"] as const satisfies readonly AuthCheckKind[];

/** The kind of a delivery target (`relay:host:25` -> `relay`): never the host, URL or address. */
export function targetLabel(target: ClaimedTarget): TargetLabel {
  return target.kind === "unreadable" ? "other" : target.kind;
}

/** The session's last reply before it closed tells how it ended. */
const CLOSING_REPLIES: [Reply, SessionOutcome][] = [
  [R.bye(), "quit"],
  [R.timeout(), "timeout"],
  [R.shuttingDown(), "shutdown"],
  [R.tooManyErrors(), "error_limit"],
  [R.tooManyAuthFailures(), "error_limit"],
];
const AUTH_FAILED = `${R.authFailed().code} ${R.authFailed().status} `;

function closingOutcome(lastReply: string): SessionOutcome | undefined {
  for (const [r, outcome] of CLOSING_REPLIES) {
    if (lastReply.startsWith(`${r.code} ${r.status} `)) return outcome;
  }
  return undefined;
}

/** One SMTP connection as the listener reports it. */
export interface ConnectionTrack {
  /** Says how the connection ends when the listener knows better than the last reply; first call wins. */
  mark(outcome: SessionOutcome): void;
  /** Every reply text the session sends (AUTH failures and the closing reply are read from it). */
  sent(text: string): void;
  /** The socket closed; counts the session once, however often it is called, and says how it ended. */
  ended(): SessionOutcome;
}

/** What the SMTP listener needs. */
export interface SmtpMetrics {
  connectionOpened(port: PortKind): ConnectionTrack;
}

const SECONDS_FAST = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SECONDS_SESSION = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
// From instant (mailbox, a local relay) to the queue lifetime (days).
const SECONDS_DELIVERY = [
  0.01,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  900,
  3600,
  4 * 3600,
  86400,
  5 * 86400,
];

export interface PosternMetricsDeps {
  /** For the queue gauges; without it they are left out. */
  db?: Db;
  onCollectError?(name: string, err: unknown): void;
}

export class PosternMetrics implements SmtpMetrics {
  readonly registry: Registry;

  readonly connectionsOpen;
  readonly connectionsTotal;
  readonly sessionsTotal;
  readonly sessionDuration;
  readonly authFailures;
  readonly messagesReceived;
  readonly delivered;
  readonly deferred;
  readonly bounced;
  readonly deliveryDuration;
  readonly dsnsSent;
  readonly dnsLookupDuration;
  readonly authChecks;
  readonly databaseUp;

  constructor(deps: PosternMetricsDeps = {}) {
    const r = new Registry({ onCollectError: deps.onCollectError });
    this.registry = r;

    this.connectionsOpen = r.gauge<"port">({
      name: "postern_smtp_connections_open",
      help: "SMTP connections open now, per port.",
      labelNames: ["port"],
    });
    this.connectionsTotal = r.counter<"port">({
      name: "postern_smtp_connections_total",
      help: "SMTP connections accepted by the listener (refused ones included), per port.",
      labelNames: ["port"],
    });
    this.sessionsTotal = r.counter<"port" | "outcome">({
      name: "postern_smtp_sessions_total",
      help: "SMTP connections ended, per port and outcome.",
      labelNames: ["port", "outcome"],
    });
    this.sessionDuration = r.histogram<"port">({
      name: "postern_smtp_session_duration_seconds",
      help: "Length of SMTP sessions from connect to close, per port (connections refused at connect left out).",
      labelNames: ["port"],
      buckets: SECONDS_SESSION,
    });
    this.authFailures = r.counter<"port">({
      name: "postern_auth_failures_total",
      help: "Failed SMTP AUTH attempts (535 5.7.8), per port.",
      labelNames: ["port"],
    });
    this.messagesReceived = r.counter<"port">({
      name: "postern_messages_received_total",
      help: "Messages accepted over SMTP and committed to the queue (250 after DATA/BDAT), per port.",
      labelNames: ["port"],
    });
    this.delivered = r.counter<"target">({
      name: "postern_messages_delivered_total",
      help: "Recipient deliveries completed, per target kind (mailbox: kept when written).",
      labelNames: ["target"],
    });
    this.deferred = r.counter<"target">({
      name: "postern_messages_deferred_total",
      help: "Delivery attempts that failed temporarily and will be retried, per target kind.",
      labelNames: ["target"],
    });
    this.bounced = r.counter<"target">({
      name: "postern_messages_bounced_total",
      help: "Recipient deliveries given up (permanent failure or queue lifetime over), per target kind.",
      labelNames: ["target"],
    });
    this.deliveryDuration = r.histogram<"target">({
      name: "postern_delivery_duration_seconds",
      help: "Delivery latency: from the message's commit to the queue to its delivery, per target kind.",
      labelNames: ["target"],
      buckets: SECONDS_DELIVERY,
    });
    this.dsnsSent = r.counter<"action">({
      name: "postern_dsns_sent_total",
      help: "Delivery status notifications queued to senders, per action (failed, delayed, delivered).",
      labelNames: ["action"],
    });
    this.dnsLookupDuration = r.histogram<"type">({
      name: "postern_dns_lookup_duration_seconds",
      help: "DNS look-ups sent to the DNS servers (cache hits left out), per record type.",
      labelNames: ["type"],
      buckets: SECONDS_FAST,
    });
    this.authChecks = r.counter<"how">({
      name: "postern_auth_checks_total",
      help: "Inbound SPF/DKIM/DMARC/ARC outcomes: signed mail verified, unsigned mail checked, a kept verdict reused.",
      labelNames: ["how"],
    });

    this.databaseUp = r.gauge({
      name: "postern_database_up",
      help: "1 while the database answers this process's health check, 0 while it does not.",
    });
    this.databaseUp.set(undefined, 1);

    // Every known series from the start, so rates and sums have no gaps.
    for (const port of PORTS) {
      this.connectionsOpen.set({ port }, 0);
      this.connectionsTotal.inc({ port }, 0);
      this.authFailures.inc({ port }, 0);
      this.messagesReceived.inc({ port }, 0);
      this.sessionDuration.init({ port });
      for (const outcome of SESSION_OUTCOMES) this.sessionsTotal.inc({ port, outcome }, 0);
    }
    for (const target of TARGET_KINDS) {
      for (const c of [this.delivered, this.deferred, this.bounced]) c.inc({ target }, 0);
      this.deliveryDuration.init({ target });
    }
    for (const action of DSN_ACTIONS) this.dsnsSent.inc({ action }, 0);
    for (const type of DNS_TYPES) this.dnsLookupDuration.init({ type });
    for (const how of AUTH_CHECK_KINDS) this.authChecks.inc({ how }, 0);

    const db = deps.db;
    if (db) {
      r.gauge<"status">({
        name: "postern_queue_depth",
        help: "Recipient deliveries in the queue, per status.",
        labelNames: ["status"],
        collect: async () => {
          // on the due index: the cost follows the queue, not the history kept
          const rows = await db
            .select({ status: deliveries.status, n: count() })
            .from(deliveries)
            .where(inArray(deliveries.status, [...PENDING_STATUSES]))
            .groupBy(deliveries.status);
          const by = new Map(rows.map((row) => [row.status, Number(row.n)]));
          return PENDING_STATUSES.map((status) => ({ labels: { status }, value: by.get(status) ?? 0 }));
        },
      });
      r.gauge({
        name: "postern_queue_oldest_seconds",
        help: "Age of the oldest queued or deferred delivery, in seconds (0 when none waits).",
        collect: async () => {
          const [row] = await db
            .select({
              age: sql<number>`coalesce(extract(epoch from (now() - min(${deliveries.createdAt}))), 0)`.mapWith(
                Number,
              ),
            })
            .from(deliveries)
            .where(inArray(deliveries.status, ["queued", "deferred"]));
          return Math.max(0, row?.age ?? 0);
        },
      });
    }
  }

  render(): Promise<string> {
    return this.registry.render();
  }

  // --- SMTP ---

  connectionOpened(port: PortKind): ConnectionTrack {
    this.connectionsTotal.inc({ port });
    this.connectionsOpen.inc({ port });
    const started = performance.now();
    let outcome: SessionOutcome | undefined;
    let lastReply = "";
    let done: SessionOutcome | undefined;
    return {
      mark: (o) => {
        outcome ??= o;
      },
      sent: (text) => {
        lastReply = text;
        if (text.startsWith(AUTH_FAILED)) this.authFailures.inc({ port });
      },
      ended: () => {
        if (done) return done;
        const how = outcome ?? closingOutcome(lastReply) ?? "closed";
        done = how;
        this.connectionsOpen.dec({ port });
        this.sessionsTotal.inc({ port, outcome: how });
        if (how !== "refused_limit")
          this.sessionDuration.observe({ port }, (performance.now() - started) / 1000);
        return how;
      },
    };
  }

  /** A message accepted over SMTP is durable in the queue. */
  messageReceived(port: PortKind): void {
    this.messagesReceived.inc({ port });
  }

  // --- queue ---

  /** Messages the enqueuer committed: a mailbox delivery is done by being written. */
  committed(batch: readonly Pick<NewMessage, "deliveries">[]): void {
    for (const m of batch)
      for (const d of m.deliveries) if (d.target.kind === "mailbox") this.keptInMailbox();
  }

  private keptInMailbox(): void {
    this.delivered.inc({ target: "mailbox" });
    this.deliveryDuration.observe({ target: "mailbox" }, 0);
  }

  /**
   * The DSN writer made a notice. It is counted as it is made, inside the settling transaction:
   * a transaction that then fails (logged) over-counts by its notices, which is rare and harmless.
   */
  dsnWritten(action: DsnAction, target: Target): void {
    if ((DSN_ACTIONS as readonly string[]).includes(action)) this.dsnsSent.inc({ action });
    if (target.kind === "mailbox") this.keptInMailbox();
  }

  /** A batch of attempts is settled and committed (the scheduler's hook). */
  settled(batch: readonly SettledDelivery[], now = Date.now()): void {
    for (const s of batch) {
      const target = targetLabel(s.delivery.target);
      if (s.report.outcome === "delivered") {
        this.delivered.inc({ target });
        this.deliveryDuration.observe({ target }, Math.max(0, now - s.message.receivedAt.getTime()) / 1000);
      } else if (s.nextAttemptAt !== undefined) this.deferred.inc({ target });
      else this.bounced.inc({ target });
    }
  }

  /** The database health check changed its mind. */
  databaseState(up: boolean): void {
    this.databaseUp.set(undefined, up ? 1 : 0);
  }

  // --- DNS ---

  dnsLookup(type: RecordType, seconds: number): void {
    this.dnsLookupDuration.observe({ type }, seconds);
  }

  /** An inbound message's SPF/DKIM/DMARC/ARC outcome, by how it was had. */
  authChecked(how: AuthCheckKind): void {
    this.authChecks.inc({ how });
  }
}
