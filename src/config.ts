// Every setting of the contract, validated once. This is the only module that reads process.env:
// everything else receives a Config, so tests build one from a plain object.

import { hostname } from "node:os";
import { resolve } from "node:path";
import { z } from "zod";
import { HIDDEN, redactDatabaseUrl, redactor, redactUrlPasswords, urlPassword } from "./secrets.ts";

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(:\d{1,5})?$/, "host[:port]");
// A resolver is named by address: looking up the resolver's own name would need a resolver.
const ipPort = z
  .string()
  .regex(
    /^(\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?|\[[0-9a-fA-F:.]+\](:\d{1,5})?|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/,
    "ip[:port]",
  );

/** What POSTERN_ACME_DIRECTORY=letsencrypt stands for. */
const LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory";

const schema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "a postgres:// URL")
    .optional(),
  POSTERN_DATA_DIR: z.string().min(1).default("./data"),
  POSTERN_HOSTNAME: z
    .string()
    .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, "a host name")
    .default(hostname()),
  POSTERN_LISTEN: z.union([z.ipv4(), z.ipv6()], "an IPv4 or IPv6 address").default("0.0.0.0"),
  POSTERN_SMTP_PORT: port.default(25),
  POSTERN_SUBMISSION_PORT: port.default(587),
  POSTERN_SUBMISSIONS_PORT: port.default(465),
  POSTERN_HTTP_PORT: port.default(8025),
  POSTERN_HTTPS_PORT: port.default(443),
  POSTERN_ADMIN_TOKEN: z.string().min(16, "at least 16 characters").optional(),
  POSTERN_TLS_CERT: z.string().min(1).optional(),
  POSTERN_TLS_KEY: z.string().min(1).optional(),
  POSTERN_DNS_SERVERS: z
    .string()
    .optional()
    .transform((s) =>
      s
        ?.split(",")
        .map((x) => x.trim())
        .filter(Boolean),
    )
    .pipe(z.array(ipPort).optional()),
  POSTERN_OUTBOUND_PORT: port.default(25),
  POSTERN_SMARTHOST: hostPort.optional(),
  POSTERN_SMARTHOST_USER: z.string().min(1).optional(),
  POSTERN_SMARTHOST_PASSWORD: z.string().min(1).optional(),
  POSTERN_MAX_MESSAGE_BYTES: positiveInt.default(26214400),
  POSTERN_MAX_RECIPIENTS: positiveInt.default(100),
  POSTERN_MAX_CONNECTIONS: positiveInt.default(1000),
  POSTERN_MAX_CONNECTIONS_PER_IP: positiveInt.default(50),
  POSTERN_RETRY_BASE_SECONDS: positiveInt.default(60),
  POSTERN_RETRY_MAX_SECONDS: positiveInt.default(3600),
  POSTERN_QUEUE_LIFETIME_SECONDS: positiveInt.default(432000),
  POSTERN_DELAY_WARNING_SECONDS: positiveInt.default(14400),
  POSTERN_HISTORY_DAYS: z.coerce.number().int().min(0).default(7),
  POSTERN_AUTH_LOCKOUT_FAILURES: z.coerce.number().int().min(0).default(10),
  POSTERN_INBOUND_PER_MINUTE: z.coerce.number().int().min(0).default(120),
  POSTERN_SEND_LIMIT_PER_HOUR: z.coerce.number().int().min(0).default(0),
  POSTERN_DNSBL_ZONES: z
    .string()
    .default("")
    .transform((v) =>
      v
        .split(",")
        .map((z) => z.trim().toLowerCase().replace(/\.$/, ""))
        .filter((z) => z !== ""),
    )
    .pipe(z.array(z.string().regex(/^[a-z0-9-]+(\.[a-z0-9-]+)+$/, "DNS zone names"))),
  POSTERN_DMARC_POLICY: z.enum(["enforce", "monitor"]).default("enforce"),
  POSTERN_DNS_CHECKS: z.enum(["on", "off"]).default("on"),
  POSTERN_ALLOW_PRIVATE_DESTINATIONS: z.enum(["on", "off"]).default("off"),
  POSTERN_MTA_STS: z.enum(["enforce", "off"]).default("enforce"),
  POSTERN_EXTRA_CA_FILE: z.string().min(1).optional(),
  POSTERN_ACME_DIRECTORY: z
    .string()
    .min(1)
    .optional()
    .transform((v) => (v === "letsencrypt" ? LETS_ENCRYPT : v))
    .pipe(z.url({ protocol: /^https$/, error: "an https:// ACME directory URL or letsencrypt" }).optional()),
  POSTERN_ACME_EMAIL: z.email().optional(),
  POSTERN_ACME_CA_FILE: z.string().min(1).optional(),
  POSTERN_ACME_HTTP_PORT: port.default(80),
  POSTERN_TLSRPT: z.enum(["on", "off"]).default("on"),
  POSTERN_TLSRPT_PERIOD_SECONDS: z.coerce.number().int().min(1).default(86400),
  POSTERN_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
});

export type Settings = z.output<typeof schema>;

export interface Config {
  databaseUrl: string | undefined;
  dataDir: string;
  hostname: string;
  listen: string;
  smtpPort: number;
  submissionPort: number;
  submissionsPort: number;
  httpPort: number;
  /** MTA-STS policy hosting over HTTPS. */
  httpsPort: number;
  adminToken: string | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  dnsServers: string[] | undefined;
  outboundPort: number;
  smarthost: string | undefined;
  /** AUTH at the smarthost (only ever sent over TLS). */
  smarthostAuth: { username: string; password: string } | undefined;
  maxMessageBytes: number;
  maxRecipients: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  queueLifetimeSeconds: number;
  delayWarningSeconds: number;
  /** Days a finished message (nothing pending, no mailbox copy) is kept after it came in; 0 = always. */
  historyDays: number;
  dmarcPolicy: "enforce" | "monitor";
  /** Wrong AUTH logins from one IP within 15 min before it is locked out for 15 min; 0 = never. */
  authLockoutFailures: number;
  /** Messages (MAIL commands) per client IP per minute on port 25, on each node; 0 = no limit. */
  inboundPerMinute: number;
  /** Recipients per hour of a user or key without a limit of its own, on all nodes; 0 = none. */
  sendLimitPerHour: number;
  /** DNS blocklist zones a port-25 client is looked up in. */
  dnsblZones: string[];
  /** Every check that asks DNS about a peer: sender and recipient domains, SPF/DKIM/DMARC/ARC. */
  dnsChecks: boolean;
  /**
   * Deliver to MX hosts (found in DNS) whose addresses are loopback, private or reserved. Off, a
   * domain's owner cannot point the gateway at the inner network; relay targets and the smarthost
   * are the operator's choice and always allowed.
   */
  allowPrivateDestinations: boolean;
  /** Honour receivers' MTA-STS policies (RFC 8461). */
  mtaSts: boolean;
  /** PEM roots trusted besides the system's for MTA-STS policy fetches and MX certificates. */
  extraCaFile: string | undefined;
  /** Get and renew our certificate by ACME (RFC 8555); undefined: off. */
  acme:
    | { directoryUrl: string; email: string | undefined; caFile: string | undefined; httpPort: number }
    | undefined;
  /** Send RFC 8460 TLS reports, one per domain and period of this many seconds (undefined: off). */
  tlsReportPeriodSeconds: number | undefined;
  logLevel: "debug" | "info" | "warn" | "error";
}

export class ConfigError extends Error {}

/** Validates a set of variables; the first problem becomes a one-line ConfigError. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "unset", as in a shell `FOO= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = schema.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const name = String(issue.path[0]);
    throw new ConfigError(
      `${name}=${shownValue(name, present[name] ?? "")} is invalid: expected ${expected(issue)}`,
    );
  }
  const s = result.data;
  if ((s.POSTERN_TLS_CERT === undefined) !== (s.POSTERN_TLS_KEY === undefined)) {
    throw new ConfigError("POSTERN_TLS_CERT and POSTERN_TLS_KEY must be set together");
  }
  if ((s.POSTERN_SMARTHOST_USER === undefined) !== (s.POSTERN_SMARTHOST_PASSWORD === undefined)) {
    throw new ConfigError("POSTERN_SMARTHOST_USER and POSTERN_SMARTHOST_PASSWORD must be set together");
  }
  if (s.POSTERN_SMARTHOST_USER && !s.POSTERN_SMARTHOST) {
    throw new ConfigError("POSTERN_SMARTHOST_USER is set but POSTERN_SMARTHOST is not");
  }
  if (s.POSTERN_RETRY_MAX_SECONDS < s.POSTERN_RETRY_BASE_SECONDS) {
    throw new ConfigError(
      `POSTERN_RETRY_MAX_SECONDS=${s.POSTERN_RETRY_MAX_SECONDS} is invalid: expected at least POSTERN_RETRY_BASE_SECONDS (${s.POSTERN_RETRY_BASE_SECONDS})`,
    );
  }
  return {
    databaseUrl: s.DATABASE_URL,
    dataDir: resolve(s.POSTERN_DATA_DIR),
    hostname: s.POSTERN_HOSTNAME,
    listen: s.POSTERN_LISTEN,
    smtpPort: s.POSTERN_SMTP_PORT,
    submissionPort: s.POSTERN_SUBMISSION_PORT,
    submissionsPort: s.POSTERN_SUBMISSIONS_PORT,
    httpPort: s.POSTERN_HTTP_PORT,
    httpsPort: s.POSTERN_HTTPS_PORT,
    adminToken: s.POSTERN_ADMIN_TOKEN,
    tlsCert: s.POSTERN_TLS_CERT,
    tlsKey: s.POSTERN_TLS_KEY,
    dnsServers: s.POSTERN_DNS_SERVERS,
    outboundPort: s.POSTERN_OUTBOUND_PORT,
    smarthost: s.POSTERN_SMARTHOST,
    smarthostAuth:
      s.POSTERN_SMARTHOST_USER && s.POSTERN_SMARTHOST_PASSWORD
        ? { username: s.POSTERN_SMARTHOST_USER, password: s.POSTERN_SMARTHOST_PASSWORD }
        : undefined,
    maxMessageBytes: s.POSTERN_MAX_MESSAGE_BYTES,
    maxRecipients: s.POSTERN_MAX_RECIPIENTS,
    maxConnections: s.POSTERN_MAX_CONNECTIONS,
    maxConnectionsPerIp: s.POSTERN_MAX_CONNECTIONS_PER_IP,
    retryBaseSeconds: s.POSTERN_RETRY_BASE_SECONDS,
    retryMaxSeconds: s.POSTERN_RETRY_MAX_SECONDS,
    queueLifetimeSeconds: s.POSTERN_QUEUE_LIFETIME_SECONDS,
    delayWarningSeconds: s.POSTERN_DELAY_WARNING_SECONDS,
    historyDays: s.POSTERN_HISTORY_DAYS,
    dmarcPolicy: s.POSTERN_DMARC_POLICY,
    authLockoutFailures: s.POSTERN_AUTH_LOCKOUT_FAILURES,
    inboundPerMinute: s.POSTERN_INBOUND_PER_MINUTE,
    dnsblZones: s.POSTERN_DNSBL_ZONES,
    sendLimitPerHour: s.POSTERN_SEND_LIMIT_PER_HOUR,
    dnsChecks: s.POSTERN_DNS_CHECKS === "on",
    allowPrivateDestinations: s.POSTERN_ALLOW_PRIVATE_DESTINATIONS === "on",
    mtaSts: s.POSTERN_MTA_STS === "enforce",
    extraCaFile: s.POSTERN_EXTRA_CA_FILE,
    acme: s.POSTERN_ACME_DIRECTORY
      ? {
          directoryUrl: s.POSTERN_ACME_DIRECTORY,
          email: s.POSTERN_ACME_EMAIL,
          caFile: s.POSTERN_ACME_CA_FILE,
          httpPort: s.POSTERN_ACME_HTTP_PORT,
        }
      : undefined,
    tlsReportPeriodSeconds: s.POSTERN_TLSRPT === "on" ? s.POSTERN_TLSRPT_PERIOD_SECONDS : undefined,
    logLevel: s.POSTERN_LOG_LEVEL,
  };
}

/** Settings whose value is a secret as a whole: an error names them, never shows them. */
const SECRET_SETTINGS = new Set(["POSTERN_ADMIN_TOKEN", "POSTERN_SMARTHOST_PASSWORD"]);

/** A setting's value as an error message may show it: secrets hidden, URL passwords too. */
function shownValue(name: string, value: string): string {
  if (SECRET_SETTINGS.has(name)) return `${HIDDEN} (${value.length} characters, not shown)`;
  if (name === "DATABASE_URL") return JSON.stringify(redactDatabaseUrl(value));
  return JSON.stringify(redactUrlPasswords(value));
}

/** Hides the secrets of these settings wherever they appear in a text (errors, log lines). */
export function secretRedactor(
  config: Pick<Config, "databaseUrl" | "adminToken" | "smarthostAuth">,
): (text: string) => string {
  return redactor([
    ...urlPassword(config.databaseUrl ?? ""),
    config.adminToken,
    config.smarthostAuth?.password,
  ]);
}

function expected(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_value":
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "too_small":
      return issue.origin === "string"
        ? issue.message
        : `a number ${issue.inclusive ? ">=" : ">"} ${issue.minimum}`;
    case "too_big":
      return `a number <= ${issue.maximum}`;
    case "invalid_type":
      return issue.expected === "number" || issue.expected === "int" ? "a whole number" : issue.expected;
    case "invalid_format":
      return issue.message.startsWith("Invalid") ? `a ${issue.format}` : issue.message;
    default:
      return issue.message;
  }
}

/** SMTP and HTTPS ports a non-root user can bind, for `npm start` (`serve --unprivileged-ports`). */
export const UNPRIVILEGED_PORTS = {
  POSTERN_SMTP_PORT: "2525",
  POSTERN_SUBMISSION_PORT: "2587",
  POSTERN_SUBMISSIONS_PORT: "2465",
  POSTERN_HTTPS_PORT: "2443",
  POSTERN_ACME_HTTP_PORT: "2080",
} as const;

/**
 * The process environment (Bun has already merged `.env` into it). With `unprivilegedPorts`,
 * ports that neither sets default to 2525/2587/2465/2443/2080 instead of 25/587/465/443/80.
 */
export function loadConfig(options: { unprivilegedPorts?: boolean } = {}): Config {
  const env = options.unprivilegedPorts
    ? { ...UNPRIVILEGED_PORTS, ...definedOnly(process.env) }
    : process.env;
  return parseConfig(env);
}

function definedOnly(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => Boolean(e[1])));
}
