// The gateway's metrics (prom-client), made once in serve.ts and fed by the events of the parts
// that count: the SMTP listeners and sessions (connections, how sessions end, AUTH failures), the
// session backend (messages received), the enqueuer and the scheduler (delivery outcomes and
// latency), the DSN writer, the DNS resolver. The queue gauges are the queue module's own
// queries, read at scrape time. Every label comes from a small fixed set: a port kind, a target
// kind, a status, a DSN action, a DNS record type.

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Db } from "../db/open.ts";
import { PENDING_STATUSES } from "../db/schema.ts";
import { pausedDestinations } from "../delivery/shaping.ts";
import type { TlsSession } from "../delivery/smtp-courier.ts";
import type { RecordType } from "../dns/message.ts";
import { TARGET_KINDS, type Target } from "../domains/targets.ts";
import type { AuthCheckKind } from "../mail/authcheck.ts";
import type { DsnAction } from "../mail/dsn.ts";
import type { ClaimedTarget } from "../queue/claim.ts";
import { keptOnWrite, type NewMessage } from "../queue/enqueue.ts";
import { oldestWaitingSeconds, queueDepth } from "../queue/inspect.ts";
import type { SettledDelivery } from "../queue/settle.ts";
import type { PortKind, SessionEvent } from "../smtp/session.ts";

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

/** One SMTP connection as the listener reports it. */
export interface ConnectionTrack {
  /** Says how the connection ends (the listener's view: limits, TLS, timeouts); first call wins. */
  mark(outcome: SessionOutcome): void;
  /** What its session said of itself: an AUTH failure, or why it ends (a mark, first call wins). */
  event(e: SessionEvent): void;
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
  /** When the certificate in service expires (postern_tls_certificate_days_left). */
  certificateNotAfter?: () => Date;
  onCollectError?(name: string, err: unknown): void;
}

/** The limits that refuse a client or a sender (bounded label values). */
export type LimitKind = "auth-lockout" | "inbound-rate" | "send-quota" | "dnsbl";

export class PosternMetrics implements SmtpMetrics {
  readonly registry = new Registry();

  private readonly connectionsOpen;
  private readonly connectionsTotal;
  private readonly sessionsTotal;
  private readonly sessionDuration;
  private readonly authFailures;
  private readonly messagesReceived;
  private readonly delivered;
  private readonly deferred;
  private readonly bounced;
  private readonly deliveryDuration;
  private readonly dsnsSent;
  private readonly hookPosts;
  private readonly limitRefusals;
  private readonly dnsblChecks;
  private readonly tlsSessions;
  private readonly dnsLookupDuration;
  private readonly authChecks;
  private readonly databaseUp;

  constructor(deps: PosternMetricsDeps = {}) {
    const registers = [this.registry];
    if (deps.certificateNotAfter) this.certificateGauge(registers, deps.certificateNotAfter);
    this.connectionsOpen = new Gauge({
      name: "postern_smtp_connections_open",
      help: "SMTP connections open now, per port.",
      labelNames: ["port"],
      registers,
    });
    this.connectionsTotal = new Counter({
      name: "postern_smtp_connections_total",
      help: "SMTP connections accepted by the listener (refused ones included), per port.",
      labelNames: ["port"],
      registers,
    });
    this.sessionsTotal = new Counter({
      name: "postern_smtp_sessions_total",
      help: "SMTP connections ended, per port and outcome.",
      labelNames: ["port", "outcome"],
      registers,
    });
    this.sessionDuration = new Histogram({
      name: "postern_smtp_session_duration_seconds",
      help: "Length of SMTP sessions from connect to close, per port (connections refused at connect left out).",
      labelNames: ["port"],
      buckets: SECONDS_SESSION,
      registers,
    });
    this.authFailures = new Counter({
      name: "postern_auth_failures_total",
      help: "Failed SMTP AUTH attempts (535 5.7.8), per port.",
      labelNames: ["port"],
      registers,
    });
    this.messagesReceived = new Counter({
      name: "postern_messages_received_total",
      help: "Messages accepted over SMTP and committed to the queue (250 after DATA/BDAT), per port.",
      labelNames: ["port"],
      registers,
    });
    this.delivered = new Counter({
      name: "postern_messages_delivered_total",
      help: "Recipient deliveries completed, per target kind (mailbox: kept when written).",
      labelNames: ["target"],
      registers,
    });
    this.deferred = new Counter({
      name: "postern_messages_deferred_total",
      help: "Delivery attempts that failed temporarily and will be retried, per target kind.",
      labelNames: ["target"],
      registers,
    });
    this.bounced = new Counter({
      name: "postern_messages_bounced_total",
      help: "Recipient deliveries given up (permanent failure or queue lifetime over), per target kind.",
      labelNames: ["target"],
      registers,
    });
    this.deliveryDuration = new Histogram({
      name: "postern_delivery_duration_seconds",
      help: "Delivery latency: from the message's commit to the queue to its delivery, per target kind.",
      labelNames: ["target"],
      buckets: SECONDS_DELIVERY,
      registers,
    });
    this.dsnsSent = new Counter({
      name: "postern_dsns_sent_total",
      help: "Delivery status notifications queued to senders, per action (failed, delayed, delivered).",
      labelNames: ["action"],
      registers,
    });
    this.limitRefusals = new Counter({
      name: "postern_limit_refusals_total",
      help: "Commands refused by a limit: auth-lockout (AUTH from a locked-out IP), inbound-rate (MAIL over POSTERN_INBOUND_PER_MINUTE), send-quota (RCPT or /api/send over a quota), dnsbl (a listed client).",
      labelNames: ["limit"],
      registers,
    });
    this.dnsblChecks = new Counter({
      name: "postern_dnsbl_checks_total",
      help: "Port-25 clients looked up in the DNSBL zones, by outcome: listed, clear, error (let through).",
      labelNames: ["result"],
      registers,
    });
    this.tlsSessions = new Counter({
      name: "postern_outbound_tls_sessions_total",
      help: "Sessions to MX hosts by the recipient domain's MTA-STS mode (enforce, testing, none) and TLS result: success, or an RFC 8460 failure type (starttls-not-supported, certificate-host-mismatch, sts-policy-fetch-error, ...).",
      labelNames: ["policy", "result"],
      registers,
    });
    this.hookPosts = new Counter({
      name: "postern_hook_posts_total",
      help: "Event webhook POSTs by outcome: delivered, retried (refused, tried again), failed (given up after 24 h).",
      labelNames: ["outcome"],
      registers,
    });
    this.dnsLookupDuration = new Histogram({
      name: "postern_dns_lookup_duration_seconds",
      help: "DNS look-ups sent to the DNS servers (cache hits left out), per record type.",
      labelNames: ["type"],
      buckets: SECONDS_FAST,
      registers,
    });
    this.authChecks = new Counter({
      name: "postern_auth_checks_total",
      help: "Inbound SPF/DKIM/DMARC/ARC outcomes: signed mail verified, unsigned mail checked, a kept verdict reused.",
      labelNames: ["how"],
      registers,
    });
    this.databaseUp = new Gauge({
      name: "postern_database_up",
      help: "1 while the database answers this process's health check, 0 while it does not.",
      registers,
    });
    this.databaseUp.set(1);

    // Every known series from the start, so rates and sums have no gaps.
    for (const port of PORTS) {
      this.connectionsOpen.set({ port }, 0);
      this.connectionsTotal.inc({ port }, 0);
      this.authFailures.inc({ port }, 0);
      this.messagesReceived.inc({ port }, 0);
      this.sessionDuration.zero({ port });
      for (const outcome of SESSION_OUTCOMES) this.sessionsTotal.inc({ port, outcome }, 0);
    }
    for (const target of TARGET_KINDS) {
      for (const c of [this.delivered, this.deferred, this.bounced]) c.inc({ target }, 0);
      this.deliveryDuration.zero({ target });
    }
    for (const action of DSN_ACTIONS) this.dsnsSent.inc({ action }, 0);
    for (const type of DNS_TYPES) this.dnsLookupDuration.zero({ type });
    for (const how of AUTH_CHECK_KINDS) this.authChecks.inc({ how }, 0);

    const db = deps.db;
    if (db) {
      // A gauge whose query failed (the database away) is NaN in that scrape, not a stale or
      // made-up number; the other metrics are unaffected.
      const collected = (name: string, read: (g: Gauge) => Promise<void>, unknown: (g: Gauge) => void) =>
        async function (this: Gauge) {
          try {
            await read(this);
          } catch (err) {
            unknown(this);
            deps.onCollectError?.(name, err);
          }
        };
      new Gauge({
        name: "postern_queue_depth",
        help: "Recipient deliveries in the queue, per status.",
        labelNames: ["status"],
        registers,
        collect: collected(
          "postern_queue_depth",
          async (g) => {
            const depth = await queueDepth(db);
            for (const status of PENDING_STATUSES) g.set({ status }, depth[status]);
          },
          (g) => {
            for (const status of PENDING_STATUSES) g.set({ status }, Number.NaN);
          },
        ),
      });
      new Gauge({
        name: "postern_queue_oldest_seconds",
        help: "Age of the oldest queued or deferred delivery, in seconds (0 when none waits).",
        registers,
        collect: collected(
          "postern_queue_oldest_seconds",
          async (g) => g.set(await oldestWaitingSeconds(db)),
          (g) => g.set(Number.NaN),
        ),
      });
      new Gauge({
        name: "postern_destinations_paused",
        help: "Destinations paused on every node because they answered rate limited (shape pattern or recipient domain).",
        registers,
        collect: collected(
          "postern_destinations_paused",
          async (g) => g.set(await pausedDestinations(db)),
          (g) => g.set(Number.NaN),
        ),
      });
    }
  }

  private certificateGauge(registers: Registry[], notAfter: () => Date): void {
    new Gauge({
      name: "postern_tls_certificate_days_left",
      help: "Days until the certificate served on 25, 587, 465 and 443 expires (ACME renews it at two thirds of its lifetime).",
      registers,
      collect() {
        this.set((notAfter().getTime() - Date.now()) / 86_400_000);
      },
    });
  }

  async render(): Promise<string> {
    // prom-client 15 writes NaN as "Nan" (lib/util.js); the text format spells it "NaN", and
    // parsers other than Prometheus's own may be strict. Only a value can end a line so.
    return (await this.registry.metrics()).replace(/ Nan$/gm, " NaN");
  }

  // --- SMTP ---

  connectionOpened(port: PortKind): ConnectionTrack {
    this.connectionsTotal.inc({ port });
    this.connectionsOpen.inc({ port });
    const started = performance.now();
    let outcome: SessionOutcome | undefined;
    let done: SessionOutcome | undefined;
    return {
      mark: (o) => {
        outcome ??= o;
      },
      event: (e) => {
        if (e.kind === "auth-failed") this.authFailures.inc({ port });
        else outcome ??= e.why;
      },
      ended: () => {
        if (done) return done;
        const how = outcome ?? "closed";
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

  limitRefused(limit: LimitKind): void {
    this.limitRefusals.inc({ limit });
  }

  dnsblChecked(result: "listed" | "clear" | "error"): void {
    this.dnsblChecks.inc({ result });
  }

  tlsSession(session: Pick<TlsSession, "policy" | "failure">): void {
    this.tlsSessions.inc({
      policy: session.policy?.mode ?? "none",
      result: session.failure?.type ?? "success",
    });
  }

  // --- queue ---

  /** Messages the enqueuer committed: deliveries done by being written count as delivered now. */
  committed(batch: readonly Pick<NewMessage, "deliveries">[]): void {
    for (const m of batch)
      for (const d of m.deliveries) if (keptOnWrite(d.target)) this.keptOnWrite(d.target);
  }

  private keptOnWrite(target: Target): void {
    this.delivered.inc({ target: target.kind });
    this.deliveryDuration.observe({ target: target.kind }, 0);
  }

  /**
   * The DSN writer made a notice. It is counted as it is made, inside the settling transaction:
   * a transaction that then fails (logged) over-counts by its notices, which is rare and harmless.
   */
  hookPostsSettled(counts: { delivered: number; retried: number; failed: number }): void {
    for (const [outcome, n] of Object.entries(counts)) if (n > 0) this.hookPosts.inc({ outcome }, n);
  }

  dsnWritten(action: DsnAction, target: Target): void {
    if ((DSN_ACTIONS as readonly string[]).includes(action)) this.dsnsSent.inc({ action });
    if (keptOnWrite(target)) this.keptOnWrite(target);
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
    this.databaseUp.set(up ? 1 : 0);
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
