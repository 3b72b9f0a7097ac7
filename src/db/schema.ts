import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
});

/** Where a delivery is: waiting (queued, deferred after a failed try) or done (delivered, bounced). */
export const DELIVERY_STATUSES = ["queued", "deferred", "delivered", "bounced"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];
/** `'a', 'b'`: constants of ours (no quote in them) for an `in (…)` in raw SQL. */
export function sqlStringList(values: readonly string[]): string {
  return values.map((v) => `'${v}'`).join(", ");
}

/** The statuses the scheduler still works on. */
export const PENDING_STATUSES = ["queued", "deferred"] as const satisfies readonly DeliveryStatus[];

export function isDeliveryStatus(s: string): s is DeliveryStatus {
  return (DELIVERY_STATUSES as readonly string[]).includes(s);
}

/**
 * A full transaction id (PostgreSQL's xid8), as text: what a hook's cursor follows, since events
 * become visible in commit order, not id order (see hooks).
 */
const xid8 = customType<{ data: string; driverData: string }>({ dataType: () => "xid8" });

const at = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const domains = pgTable("domains", {
  name: text("name").primaryKey(),
  dkimSelector: text("dkim_selector").notNull(),
  dkimRsaKey: text("dkim_rsa_key").notNull(),
  dkimEd25519Key: text("dkim_ed25519_key").notNull(),
  /** The MTA-STS policy we host for the domain: testing, enforce or none (no policy). */
  mtaStsMode: text("mta_sts_mode").notNull().default("testing"),
  createdAt: at("created_at").notNull().defaultNow(),
});

export const users = pgTable("users", {
  address: text("address").primaryKey(),
  passwordHash: text("password_hash").notNull(),
  /** Sender patterns besides the login itself: `bob@example.com` or `*@example.com`. */
  maySendAs: text("may_send_as").array().notNull().default(sql`'{}'::text[]`),
  /** Recipients per hour; null: POSTERN_SEND_LIMIT_PER_HOUR; 0: no limit. */
  limitPerHour: integer("limit_per_hour"),
  createdAt: at("created_at").notNull().defaultNow(),
});

export const routes = pgTable("routes", {
  pattern: text("pattern").primaryKey(),
  target: text("target").notNull(),
  /** HMAC key for webhook targets. */
  secret: text("secret"),
  createdAt: at("created_at").notNull().defaultNow(),
});

export const messages = pgTable(
  "messages",
  {
    id: text("id").primaryKey(),
    receivedAt: at("received_at").notNull().defaultNow(),
    /** `inbound` (port 25), `outbound` (authenticated submission, API, CLI), `dsn`. */
    direction: text("direction").notNull(),
    mailFrom: text("mail_from").notNull(),
    helo: text("helo"),
    clientIp: text("client_ip"),
    authUser: text("auth_user"),
    size: integer("size").notNull(),
    raw: bytea("raw").notNull(),
    authResults: jsonb("auth_results"),
    messageIdHeader: text("message_id_header"),
    subject: text("subject"),
    /** DSN parameters of MAIL FROM (RFC 3461). */
    envid: text("envid"),
    ret: text("ret"),
  },
  (t) => [
    index("messages_received_at_idx").on(t.receivedAt),
    // Delivery reports that come back find what they are about (mail we sent), and the console
    // finds any message by its Message-ID.
    index("messages_message_id_idx").on(t.messageIdHeader),
    index("messages_sent_envid_idx").on(t.envid).where(sql`${t.direction} = 'outbound'`),
  ],
);

export const deliveries = pgTable(
  "deliveries",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    messageId: text("message_id")
      .notNull()
      .references(() => messages.id, { onDelete: "cascade" }),
    rcpt: text("rcpt").notNull(),
    /** DSN parameters of RCPT TO (RFC 3461). */
    orcpt: text("orcpt"),
    notify: text("notify"),
    /** `mx`, `mailbox`, `relay:HOST[:PORT]`, `webhook:URL`, `forward:ADDRESS`. */
    target: text("target").notNull(),
    status: text("status", { enum: DELIVERY_STATUSES }).notNull().default("queued"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: at("next_attempt_at").notNull().defaultNow(),
    leaseOwner: text("lease_owner"),
    leaseUntil: at("lease_until"),
    lastReply: text("last_reply"),
    deliveredAt: at("delivered_at"),
    warnedAt: at("warned_at"),
    createdAt: at("created_at").notNull().defaultNow(),
  },
  (t) => [
    index("deliveries_due_idx").on(t.status, t.nextAttemptAt),
    index("deliveries_message_idx").on(t.messageId),
    index("deliveries_rcpt_idx").on(t.rcpt),
    check("deliveries_status_check", sql.raw(`${t.status.name} in (${sqlStringList(DELIVERY_STATUSES)})`)),
  ],
);

export const attempts = pgTable(
  "attempts",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    deliveryId: bigint("delivery_id", { mode: "number" })
      .notNull()
      .references(() => deliveries.id, { onDelete: "cascade" }),
    at: at("at").notNull().defaultNow(),
    durationMs: integer("duration_ms").notNull(),
    host: text("host"),
    reply: text("reply"),
    /** `delivered`, `deferred`, `bounced`. */
    outcome: text("outcome").notNull(),
  },
  (t) => [index("attempts_delivery_idx").on(t.deliveryId)],
);

/** What happened to a recipient's copy, as the sending app hears of it (CONTRACT: events). */
export const EVENT_TYPES = ["accepted", "delivered", "deferred", "bounced", "expired", "suppressed"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * The event outbox: written in the transaction of the change each row describes, so an event
 * exists if and only if its change committed. Not tied to `messages`: history pruning keeps it.
 */
export const events = pgTable(
  "events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    type: text("type", { enum: EVENT_TYPES }).notNull(),
    at: at("at").notNull().defaultNow(),
    /** Null for a `suppressed` refusal: no message was queued for it. */
    messageId: text("message_id"),
    messageIdHeader: text("message_id_header"),
    mailFrom: text("mail_from").notNull(),
    rcpt: text("rcpt").notNull(),
    attempt: integer("attempt").notNull().default(0),
    mx: text("mx"),
    replyCode: integer("reply_code"),
    replyEnhanced: text("reply_enhanced"),
    replyText: text("reply_text"),
    /** `hard`, `soft`, `block`, `rate-limit`, `config`, `unknown`; null when nothing failed. */
    class: text("class"),
    tls: boolean("tls"),
    /** The transaction that wrote it: hooks read events in (tx, id) order (see hooks). */
    tx: xid8("tx").notNull().default(sql`pg_current_xact_id()`),
  },
  (t) => [
    index("events_message_idx").on(t.messageId),
    index("events_tx_idx").on(t.tx, t.id),
    // the console's last 24 hours
    index("events_at_idx").on(t.at),
    check("events_type_check", sql.raw(`${t.type.name} in (${sqlStringList(EVENT_TYPES)})`)),
  ],
);

/**
 * Addresses a sending domain no longer mails: added on a hard bounce (or by hand), removed by
 * hand. Mail from that domain to them is refused before it is queued.
 */
export const suppressions = pgTable(
  "suppressions",
  {
    domain: text("domain").notNull(),
    address: text("address").notNull(),
    reason: text("reason").notNull(),
    /** The reply that caused it ("550 5.1.1 …"), or null when added by hand. */
    code: text("code"),
    messageId: text("message_id"),
    at: at("at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.domain, t.address] })],
);

/**
 * An application's key: authorises /api/send and SMTP AUTH (user = name) for From addresses in
 * its domains, nothing else. Only a hash of the key is kept (it is random, so SHA-256 will do).
 */
export const apiKeys = pgTable("api_keys", {
  name: text("name").primaryKey(),
  secretHash: text("secret_hash").notNull().unique(),
  domains: text("domains").array().notNull(),
  /** Recipients per hour; null: POSTERN_SEND_LIMIT_PER_HOUR; 0: no limit. */
  limitPerHour: integer("limit_per_hour"),
  createdAt: at("created_at").notNull().defaultNow(),
});

/**
 * An event webhook: events of the chosen types (all when null), of one domain's mail or all.
 *
 * A hook reads the event stream past its cursor, (tx, id): only events of transactions older than
 * every one still running (below the snapshot's xmin), which are all visible once committed, so
 * an event committed late behind a higher id is never skipped. One node at a time holds a hook
 * (the lease); its cursor moves in the transaction that records the POSTs.
 */
export const hooks = pgTable("hooks", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  url: text("url").notNull(),
  /** `whsec_` + base64 of the HMAC key (Standard Webhooks). */
  secret: text("secret").notNull(),
  events: text("events").array(),
  /** The sender's or the recipient's domain; null: every event. */
  domain: text("domain"),
  createdAt: at("created_at").notNull().defaultNow(),
  /** When a POST last went through, and when and why one last did not. */
  lastDeliveredAt: at("last_delivered_at"),
  lastFailedAt: at("last_failed_at"),
  lastFailure: text("last_failure"),
  /** Events up to (cursorTx, cursorId) are done: a new hook starts at the present. */
  cursorTx: xid8("cursor_tx").notNull().default(sql`pg_snapshot_xmin(pg_current_snapshot())`),
  cursorId: bigint("cursor_id", { mode: "number" }).notNull().default(0),
  leaseOwner: text("lease_owner"),
  leaseUntil: at("lease_until"),
});

/** Where a hook's copy of an event is: waiting to be POSTed, or given up. */
export const HOOK_DELIVERY_STATUSES = ["pending", "failed"] as const;

/**
 * Copies of events a hook refused (or did not answer in time), to be POSTed again on the mail
 * backoff: claimed with a lease like deliveries, so one node sends each; deleted once taken (the
 * hook row keeps the last outcome), kept as `failed` when given up after 24 h. Not tied to
 * `events` by a key: pruning events must drop these first.
 */
export const hookDeliveries = pgTable(
  "hook_deliveries",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    hookId: bigint("hook_id", { mode: "number" })
      .notNull()
      .references(() => hooks.id, { onDelete: "cascade" }),
    eventId: bigint("event_id", { mode: "number" }).notNull(),
    status: text("status", { enum: HOOK_DELIVERY_STATUSES }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: at("next_attempt_at").notNull().defaultNow(),
    leaseOwner: text("lease_owner"),
    leaseUntil: at("lease_until"),
    lastReply: text("last_reply"),
    createdAt: at("created_at").notNull().defaultNow(),
    doneAt: at("done_at"),
  },
  (t) => [
    index("hook_deliveries_due_idx").on(t.status, t.nextAttemptAt),
    index("hook_deliveries_hook_idx").on(t.hookId, t.createdAt),
  ],
);

/**
 * Recipients sent per user or key (`user:ADDRESS`, `key:NAME`) in each hour, on every node: the
 * send quotas (queue/quotas.ts). Rows of past hours are dropped when a new hour starts.
 */
export const sendCounts = pgTable(
  "send_counts",
  {
    subject: text("subject").notNull(),
    hour: at("hour").notNull(),
    count: integer("count").notNull(),
  },
  (t) => [primaryKey({ columns: [t.subject, t.hour] })],
);

/**
 * Outbound traffic shaping: budgets for a destination, held across every node. PATTERN is a
 * recipient domain (`gmail.com`) or an MX host suffix (`mx:.google.com`: every domain whose MX
 * is there shares the budget). delivery/shaping.ts.
 */
export const shapes = pgTable("shapes", {
  pattern: text("pattern").primaryKey(),
  /** Connections at once; null: no limit. */
  connections: integer("connections"),
  /** Messages per clock minute, per clock hour; null: no limit. */
  perMinute: integer("per_minute"),
  perHour: integer("per_hour"),
  createdAt: at("created_at").notNull().defaultNow(),
});

/** Messages sent under a shape in each minute (`m`) and hour (`h`) window. */
export const shapeCounts = pgTable(
  "shape_counts",
  {
    pattern: text("pattern").notNull(),
    window: text("window", { enum: ["m", "h"] }).notNull(),
    start: at("start").notNull(),
    count: integer("count").notNull(),
  },
  (t) => [primaryKey({ columns: [t.pattern, t.window, t.start] })],
);

/** Connection slots of a shape (or of a destination in slow start), leased by the node using one. */
export const shapeSlots = pgTable(
  "shape_slots",
  {
    key: text("key").notNull(),
    slot: integer("slot").notNull(),
    owner: text("owner"),
    leaseUntil: at("lease_until"),
  },
  (t) => [primaryKey({ columns: [t.key, t.slot] })],
);

/**
 * Destinations that answered "rate limited": paused on every node until `pausedUntil`, then in
 * slow start (one connection) for as long again. The cool-down doubles while it repeats.
 */
export const destinationPauses = pgTable("destination_pauses", {
  /** The shape's pattern, or the recipient domain when no shape covers it. */
  key: text("key").primaryKey(),
  pausedUntil: at("paused_until").notNull(),
  cooldownSeconds: integer("cooldown_seconds").notNull(),
  reason: text("reason").notNull(),
});

/** Wrong AUTH logins per client IP in the current window, and the lockout they brought (auth/lockout.ts). */
export const authFailures = pgTable("auth_failures", {
  ip: text("ip").primaryKey(),
  failures: integer("failures").notNull(),
  firstAt: at("first_at").notNull(),
  lockedUntil: at("locked_until"),
});

/**
 * One row per running scheduler, renewed every few seconds: a lease whose owner stopped renewing
 * here is free at once, however long the lease (a crashed process's deliveries go out again
 * within seconds, on any node). Liveness is judged by the database's clock alone.
 */
export const workers = pgTable("workers", {
  owner: text("owner").primaryKey(),
  aliveUntil: at("alive_until").notNull(),
  startedAt: at("started_at").notNull().defaultNow(),
});

/**
 * Receivers' MTA-STS policies as last fetched (RFC 8461 5.1): kept until `expires_at` so that an
 * attacker who blocks a later fetch (or a restart) cannot switch enforcement off.
 */
export const mtaStsPolicies = pgTable("mta_sts_policies", {
  domain: text("domain").primaryKey(),
  /** The `id` of the `_mta-sts` TXT record the policy was fetched under. */
  policyId: text("policy_id").notNull(),
  mode: text("mode").notNull(),
  mx: text("mx").array().notNull(),
  maxAge: integer("max_age").notNull(),
  fetchedAt: at("fetched_at").notNull(),
  expiresAt: at("expires_at").notNull(),
});

/**
 * Outbound TLS sessions counted per report period and policy domain (TLS-RPT, RFC 8460): added
 * to by every node, and deleted by the node that reports the period.
 */
export const tlsSessionCounts = pgTable(
  "tls_session_counts",
  {
    periodStart: at("period_start").notNull(),
    domain: text("domain").notNull(),
    /** The MTA-STS policy the sessions were held to ("" and empty: none was found). */
    policyId: text("policy_id").notNull(),
    policyMode: text("policy_mode").notNull(),
    policyMx: text("policy_mx").array().notNull(),
    policyMaxAge: integer("policy_max_age").notNull(),
    /** "success", or an RFC 8460 result type. */
    result: text("result").notNull(),
    mx: text("mx").notNull(),
    ip: text("ip").notNull(),
    detail: text("detail").notNull(),
    count: integer("count").notNull(),
  },
  (t) => [primaryKey({ columns: [t.periodStart, t.domain, t.policyId, t.result, t.mx, t.ip] })],
);

/** The report of a domain's period, claimed by the node that sends it (once across nodes). */
export const tlsReportsSent = pgTable(
  "tls_reports_sent",
  {
    domain: text("domain").notNull(),
    periodStart: at("period_start").notNull(),
    sentAt: at("sent_at").notNull().defaultNow(),
    /** Where it went, or why it did not. */
    outcome: text("outcome").notNull().default(""),
  },
  (t) => [primaryKey({ columns: [t.domain, t.periodStart] })],
);

/** TLS reports other senders mailed to us about our domains (to tlsrpt@DOMAIN). */
export const tlsReportsReceived = pgTable(
  "tls_reports_received",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    domain: text("domain").notNull(),
    organization: text("organization").notNull(),
    reportId: text("report_id").notNull(),
    startAt: at("start_at").notNull(),
    endAt: at("end_at").notNull(),
    report: jsonb("report").notNull(),
    receivedAt: at("received_at").notNull().defaultNow(),
  },
  (t) => [index("tls_reports_received_domain").on(t.domain, t.id)],
);

/**
 * The ACME account of each directory (RFC 8555): its key, shared by every node, and the lease of
 * the node ordering a certificate with it (a row, not an advisory lock: the order takes seconds,
 * and PGlite's one connection cannot hold a transaction open that long while it answers the
 * HTTP-01 requests).
 */
export const acmeAccounts = pgTable("acme_accounts", {
  directoryUrl: text("directory_url").primaryKey(),
  keyPem: text("key_pem").notNull(),
  orderingBy: text("ordering_by"),
  orderingUntil: at("ordering_until"),
  createdAt: at("created_at").notNull().defaultNow(),
});

/** The certificate ACME got for us, served by every node (one row: `server`). */
export const certificates = pgTable("certificates", {
  name: text("name").primaryKey(),
  certPem: text("cert_pem").notNull(),
  keyPem: text("key_pem").notNull(),
  names: text("names").array().notNull(),
  serial: text("serial").notNull(),
  notBefore: at("not_before").notNull(),
  notAfter: at("not_after").notNull(),
  updatedAt: at("updated_at").notNull().defaultNow(),
});

/** HTTP-01 challenges in progress: any node may be the one the ACME server asks. */
export const acmeChallenges = pgTable("acme_challenges", {
  token: text("token").primaryKey(),
  keyAuthorization: text("key_authorization").notNull(),
  createdAt: at("created_at").notNull().defaultNow(),
});

/** Operator console sessions (GET /admin): the SHA-256 of the cookie's secret, never the secret. */
export const adminSessions = pgTable("admin_sessions", {
  idHash: text("id_hash").primaryKey(),
  /** Every state-changing form carries it. */
  csrf: text("csrf").notNull(),
  expiresAt: at("expires_at").notNull(),
  createdAt: at("created_at").notNull().defaultNow(),
});
