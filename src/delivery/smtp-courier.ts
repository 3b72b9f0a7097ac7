// Delivery by SMTP: to the recipients' MX hosts (`mx`), to a smarthost, or to an inner server
// (`relay:HOST[:PORT]`). One connection carries every transaction of a group; the recipients of
// one message share a transaction. Hosts are tried in order until one takes the connection.
import { isIP } from "node:net";
import { findMx } from "../dns/mx.ts";
import type { Resolver } from "../dns/resolver.ts";
import { domainOf } from "../mail/address.ts";
import type { StsLookup } from "../mta-sts/policies.ts";
import { certificateFailureType, mxAllowed, type StsPolicy, type TlsFailure } from "../mta-sts/policy.ts";
import { isPublicAddress } from "../net/destinations.ts";
import { outcomeOfReply } from "../queue/retry.ts";
import type { AttemptReport } from "../queue/settle.ts";
import {
  type ClientOptions,
  type OutboundEnvelope,
  type Reply,
  type SmtpClientConnection,
  SmtpClientError,
} from "../smtp/client.ts";
import { classifyOutcome, readReply } from "./bounce-class.ts";
import { type Courier, type Job, reportAll } from "./courier.ts";
import { connectSmtp } from "./dial.ts";
import { type Admission, budgetReply, type Shaper } from "./shaping.ts";

/** A remote reply that says "you are sending too fast" (bounce class `rate-limit`). */
function isRateLimit(r: AttemptReport): boolean {
  const reply = readReply(r.reply);
  return (
    classifyOutcome({
      from: "remote",
      code: reply.code,
      enhanced: reply.enhanced ?? r.status,
      text: reply.text,
    }) === "rate-limit"
  );
}

export interface Host {
  /** The name we were given (MX exchange, relay host), for logs and DSNs. */
  name: string;
  port: number;
}

/**
 * Where a group goes: hosts to try in order, or a verdict for all of it without connecting.
 * Hosts found in DNS may resolve only to `public` addresses; hosts the operator named, `any`.
 */
export type Plan =
  | {
      kind: "hosts";
      hosts: Host[];
      destinations: "public" | "any";
      /** The recipient domain whose MX hosts these are: shaping applies (MX routing only). */
      domain?: string;
      /** Its MTA-STS policy (mode enforce or testing), which the TLS sessions are held to. */
      sts?: StsPolicy;
      /** Why the domain's MTA-STS policy could not be fetched just now (TLS-RPT counts it). */
      stsFailure?: TlsFailure;
    }
  | { kind: "verdict"; report: Omit<AttemptReport, "deliveryId"> };

/** The envelope a job travels with, when it is not the one it arrived with (forwarding). */
export type Rewrite = (job: Job) => Promise<{ mailFrom: string; rcpt: string }>;

export interface SmtpCourierOptions {
  helo: string;
  resolver: Resolver;
  plan(job: Job): Promise<Plan>;
  rewrite?: Rewrite;
  auth?: ClientOptions["auth"];
  /** Speak LMTP (an inner mail store): one reply per recipient after the data. */
  lmtp?: boolean;
  /** Outbound shaping and rate-limit pauses, for MX routing (delivery/shaping.ts). */
  shaper?: Pick<Shaper, "admit" | "pause">;
  timeouts?: ClientOptions["timeouts"];
  /** How STARTTLS is done (the roots certificates are checked against); dial.ts's by default. */
  startTls?: ClientOptions["startTls"];
  /** Told of each session to an MX host of a recipient domain: how its TLS went (TLS-RPT). */
  onTlsSession?: (session: TlsSession) => void;
}

/** One connection's TLS as RFC 8460 counts it: under which policy, to whom, and what failed. */
export interface TlsSession {
  domain: string;
  policy: StsPolicy | undefined;
  /** Undefined for a failure before any session: the policy could not be fetched. */
  mx: string | undefined;
  ip: string | undefined;
  failure: TlsFailure | undefined;
}

const verdict = (outcome: AttemptReport["outcome"], status: string, reply: string): Plan => ({
  kind: "verdict",
  report: { outcome, status, reply, remoteMta: null, durationMs: 0 },
});

export interface MxPlanOptions {
  resolver: Resolver;
  port: number;
  /** Deliver to loopback and private addresses too (test rigs, MX records of an inner network). */
  allowPrivate: boolean;
  /** The address whose domain counts (the forward address for forwarding); the recipient by default. */
  recipientOf?: (job: Job) => string;
  /** The domain's MTA-STS policy (POSTERN_MTA_STS=enforce); without it, none is looked for. */
  sts?: (domain: string) => Promise<StsLookup>;
}

/** MX routing (RFC 5321 5.1, RFC 7505): MX hosts by preference, implicit MX, null MX bounces. */
export function mxPlan({
  resolver,
  port,
  allowPrivate,
  recipientOf = (job) => job.delivery.rcpt,
  sts,
}: MxPlanOptions): (job: Job) => Promise<Plan> {
  return async (job) => {
    const domain = domainOf(recipientOf(job));
    const choice = await findMx(resolver, domain);
    switch (choice.kind) {
      case "hosts": {
        const found = await sts?.(domain);
        const policy = found?.policy;
        return {
          kind: "hosts",
          hosts: choice.hosts.map((h) => ({ name: h.host, port })),
          destinations: allowPrivate ? "any" : "public",
          domain,
          sts: policy?.mode === "enforce" || policy?.mode === "testing" ? policy : undefined,
          stsFailure: found?.failure,
        };
      }
      case "null-mx":
        return verdict("bounced", "5.1.10", `556 5.1.10 ${domain} accepts no mail (null MX, RFC 7505)`);
      case "no-domain":
        return verdict("bounced", "5.1.2", `550 5.1.2 ${domain}: host or domain name not found`);
      case "temporary":
        return verdict("deferred", "4.4.3", `451 4.4.3 ${domain}: DNS look-up failed (${choice.code})`);
    }
  };
}

/** One fixed host: a relay target or the smarthost. */
export function fixedPlan(host: Host): () => Promise<Plan> {
  return async () => ({ kind: "hosts", hosts: [host], destinations: "any" });
}

/** "host:port" or "[v6]:port" with a default port. */
export function parseHostPort(text: string, defaultPort: number): Host {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text);
  if (!m) throw new Error(`not host[:port]: ${text}`);
  return { name: (m[1] ?? m[2])!, port: m[3] ? Number(m[3]) : defaultPort };
}

function formatReply(r: Reply): string {
  return `${r.code}${r.enhanced ? ` ${r.enhanced}` : ""} ${r.text}`.trim();
}

/** How long a connection waits for the next group to the same host (Postfix's cache: 2 s). */
const IDLE_CONNECTION_MS = 2000;

/** Connections left open after a group, so the next group to that host skips the handshakes. */
class IdleConnections {
  private readonly idle = new Map<
    string,
    { conn: SmtpClientConnection; timer: ReturnType<typeof setTimeout> }[]
  >();

  take(key: string): SmtpClientConnection | undefined {
    const list = this.idle.get(key);
    let found: SmtpClientConnection | undefined;
    while (!found && list && list.length > 0) {
      const { conn, timer } = list.pop()!;
      clearTimeout(timer);
      if (conn.usable) found = conn;
      else conn.close();
    }
    if (list?.length === 0) this.idle.delete(key);
    return found;
  }

  park(key: string, conn: SmtpClientConnection): void {
    const list = this.idle.get(key) ?? [];
    this.idle.set(key, list);
    const entry = {
      conn,
      timer: setTimeout(() => {
        list.splice(list.indexOf(entry), 1);
        if (list.length === 0) this.idle.delete(key);
        void conn.quit();
      }, IDLE_CONNECTION_MS),
    };
    entry.timer.unref?.();
    list.push(entry);
  }
}

/** Idle connections are kept per host, and apart for MTA-STS `enforce` (verified ones only). */
const poolKey = (h: Host, plan: Extract<Plan, { kind: "hosts" }>) =>
  `${h.name}:${h.port}${plan.sts?.mode === "enforce" ? "/sts" : ""}`;

export class SmtpCourier implements Courier {
  private readonly idle = new IdleConnections();

  constructor(private readonly o: SmtpCourierOptions) {}

  async deliver(jobs: Job[]): Promise<AttemptReport[]> {
    const plan = await this.o.plan(jobs[0]!);
    if (plan.kind === "verdict") return reportAll(jobs, plan.report);
    if (plan.stsFailure) this.tlsSession(plan, undefined, undefined, plan.stsFailure);
    if (!this.o.shaper || plan.domain === undefined) return this.send(plan, jobs);
    const messages = [...new Set(jobs.map((j) => j.message.id))];
    let admission: Admission;
    try {
      admission = await this.o.shaper.admit(
        plan.domain,
        plan.hosts.map((h) => h.name),
        messages.length,
      );
    } catch (err) {
      // The shapes cannot be read: no limit can be known to hold, so nothing goes.
      return reportAll(jobs, {
        outcome: "deferred",
        status: "4.3.0",
        reply: `451 4.3.0 traffic shaping state unavailable: ${(err as Error).message}`,
        remoteMta: null,
        durationMs: 0,
      });
    }
    if (admission.kind === "wait")
      return reportAll(jobs, {
        outcome: "deferred",
        status: "4.7.0",
        reply: admission.reply,
        remoteMta: null,
        durationMs: 0,
        retryAt: admission.until,
      });
    const going = new Set(messages.slice(0, admission.messages));
    const held = jobs.filter((j) => !going.has(j.message.id));
    try {
      const reports = await this.send(
        plan,
        jobs.filter((j) => going.has(j.message.id)),
        !admission.slotted,
      );
      const limited = reports.find((r) => r.remoteMta && isRateLimit(r));
      if (limited)
        await this.o.shaper
          .pause(admission.key, `${limited.remoteMta} said: ${limited.reply.slice(0, 200)}`)
          .catch(() => {}); // the next rate-limit reply pauses it then
      return [
        ...reports,
        ...reportAll(held, {
          outcome: "deferred",
          status: "4.7.0",
          reply: admission.retryAt ? budgetReply(admission.key, admission.retryAt) : "",
          remoteMta: null,
          durationMs: 0,
          retryAt: admission.retryAt,
        }),
      ];
    } finally {
      await admission.release().catch(() => {}); // a slot not given back is free when its lease ends
    }
  }

  /** `park`: keep the connection for the next group (not under a shape's connection limit). */
  private async send(
    plan: Extract<Plan, { kind: "hosts" }>,
    jobs: Job[],
    park = true,
  ): Promise<AttemptReport[]> {
    const started = performance.now();
    const opened = await this.connect(plan);
    if ("failure" in opened) {
      return reportAll(jobs, { ...opened.failure, durationMs: performance.now() - started });
    }
    const { conn, host } = opened;
    const reports: AttemptReport[] = [];
    let broken: Omit<AttemptReport, "deliveryId" | "durationMs"> | undefined;
    try {
      for (const tx of transactions(jobs)) {
        const t0 = performance.now();
        if (broken) {
          reports.push(...reportAll(tx, { ...broken, durationMs: 0 }));
          continue;
        }
        try {
          const result = await conn.send(await this.envelopeOf(tx));
          result.recipients.forEach((r, i) => {
            reports.push({
              deliveryId: tx[i]!.delivery.id,
              outcome: outcomeOfReply(r.reply.code),
              reply: formatReply(r.reply),
              status: r.reply.enhanced ?? `${String(r.reply.code)[0]}.0.0`,
              remoteMta: host.name,
              durationMs: performance.now() - t0,
              tls: conn.tls !== undefined,
            });
          });
        } catch (err) {
          // The connection failed mid-transaction: this one and the rest wait for another try.
          broken = failureReport(host, err);
          reports.push(...reportAll(tx, { ...broken, durationMs: performance.now() - t0 }));
        }
      }
    } finally {
      if (!broken && conn.usable && park) this.idle.park(poolKey(host, plan), conn);
      else await conn.quit().catch(() => conn.close());
    }
    return reports;
  }

  private async envelopeOf(tx: Job[]): Promise<OutboundEnvelope> {
    const m = tx[0]!.message;
    const rewritten = this.o.rewrite ? await Promise.all(tx.map((j) => this.o.rewrite!(j))) : undefined;
    return {
      mailFrom: rewritten?.[0]?.mailFrom ?? m.mailFrom,
      recipients: tx.map((j, i) => ({
        address: rewritten?.[i]?.rcpt ?? j.delivery.rcpt,
        // A forwarded copy is a new delivery: the original DSN requests do not travel with it.
        notify: rewritten ? undefined : (j.delivery.notify ?? undefined),
        orcpt: rewritten ? undefined : (j.delivery.orcpt ?? undefined),
      })),
      // Without the submitter's own, our id: a delivery report that comes back names it.
      envid: rewritten ? undefined : (m.envid ?? (m.direction === "outbound" ? m.id : undefined)),
      ret: m.ret === "FULL" || m.ret === "HDRS" ? m.ret : undefined,
      data: m.raw,
    };
  }

  /**
   * The first host (and address) that greets us and takes EHLO. Under an MTA-STS policy in
   * `enforce` mode only the MX hosts it names are tried, and only over STARTTLS with a
   * certificate valid for the host name; anything less is never sent to (RFC 8461 5).
   */
  private async connect(
    plan: Extract<Plan, { kind: "hosts" }>,
  ): Promise<
    { conn: SmtpClientConnection; host: Host } | { failure: Omit<AttemptReport, "deliveryId" | "durationMs"> }
  > {
    const { destinations, sts } = plan;
    const enforce = sts?.mode === "enforce";
    let failure: Omit<AttemptReport, "deliveryId" | "durationMs"> = {
      outcome: "deferred",
      status: "4.4.1",
      reply: "no host to deliver to",
      remoteMta: null,
    };
    let hosts = plan.hosts;
    if (enforce) {
      const outside = hosts.filter((h) => !mxAllowed(sts, h.name));
      for (const h of outside) this.tlsSession(plan, h.name, undefined, outsidePolicy(h.name));
      hosts = hosts.filter((h) => !outside.includes(h));
      if (hosts.length === 0) {
        const names = plan.hosts.map((h) => h.name).join(", ");
        return {
          failure: stsRefusal(
            "4.7.4",
            `the MTA-STS policy of ${sts.domain} names none of its MX hosts (${names})`,
            null,
          ),
        };
      }
    }
    for (const host of hosts) {
      const cached = this.idle.take(poolKey(host, plan));
      if (cached) return { conn: cached, host };
    }
    // Hosts that resolved, but only to addresses we do not deliver to: if all do, that is final.
    let onlyPrivate = 0;
    for (const host of hosts) {
      let addresses: string[];
      try {
        addresses = await this.addresses(host.name);
        if (destinations === "public") {
          addresses = addresses.filter(isPublicAddress);
          if (addresses.length === 0) {
            onlyPrivate++;
            continue;
          }
        }
      } catch (err) {
        failure = {
          outcome: "deferred",
          status: "4.4.3",
          reply: `${host.name}: ${(err as Error).message}`,
          remoteMta: null,
        };
        continue;
      }
      for (const ip of addresses) {
        // A TLS handshake that fails is tried once more in plain text, as Postfix does: the
        // TLS is opportunistic, and a broken one must not stop the mail. Not under enforce.
        for (const tls of enforce ? (["required"] as const) : (["opportunistic", "none"] as const)) {
          let conn: SmtpClientConnection;
          try {
            conn = await connectSmtp({
              host: host.name,
              ip,
              port: host.port,
              helo: this.o.helo,
              tls,
              auth: this.o.auth,
              lmtp: this.o.lmtp,
              timeouts: this.o.timeouts,
              startTls: this.o.startTls,
            });
          } catch (err) {
            // Not reached, or a 4xx/5xx greeting: the next host may do better (RFC 5321 5.1).
            const tlsFailed = err instanceof SmtpClientError && err.kind === "tls";
            if (tlsFailed)
              this.tlsSession(plan, host.name, ip, {
                type: err.phase === "starttls" ? "starttls-not-supported" : "validation-failure",
                detail: err.message,
              });
            failure =
              enforce && tlsFailed
                ? stsRefusal("4.7.4", (err as Error).message, host.name, sts.domain)
                : failureReport(host, err);
            if (!tlsFailed) break;
            continue;
          }
          if (plan.domain) {
            const problem =
              sts && !mxAllowed(sts, host.name) ? outsidePolicy(host.name) : tlsProblem(conn, host.name);
            this.tlsSession(plan, host.name, ip, problem);
            if (problem && enforce) {
              await conn.quit().catch(() => conn.close());
              failure = stsRefusal("4.7.5", problem.detail, host.name, sts.domain);
              break;
            }
          }
          return { conn, host };
        }
      }
    }
    if (onlyPrivate > 0 && onlyPrivate === hosts.length) {
      const names = hosts.map((h) => h.name).join(", ");
      failure = {
        outcome: "bounced",
        status: "5.4.4",
        reply: `550 5.4.4 ${names}: only loopback, private or reserved addresses, which mail is not sent to`,
        remoteMta: null,
      };
    }
    return { failure };
  }

  /** Tells of a session (or, without `mx`, a policy fetch) for a recipient domain's TLS report. */
  private tlsSession(
    plan: Extract<Plan, { kind: "hosts" }>,
    mx: string | undefined,
    ip: string | undefined,
    failure: TlsFailure | undefined,
  ): void {
    if (plan.domain) this.o.onTlsSession?.({ domain: plan.domain, policy: plan.sts, mx, ip, failure });
  }

  private async addresses(name: string): Promise<string[]> {
    if (isIP(name)) return [name];
    const [v4, v6] = await Promise.allSettled([
      this.o.resolver.resolve(name, "A"),
      this.o.resolver.resolve(name, "AAAA"),
    ]);
    const found = [
      ...(v4.status === "fulfilled" ? v4.value : []),
      ...(v6.status === "fulfilled" ? v6.value : []),
    ];
    if (found.length > 0) return found;
    const reason = v4.status === "rejected" ? (v4.reason as { code?: string }).code : "no address";
    throw new Error(`no address for the host (${reason})`);
  }
}

/** What is wrong with a session's TLS by MTA-STS's measure (RFC 8461 4.2), if anything. */
function tlsProblem(conn: SmtpClientConnection, host: string): TlsFailure | undefined {
  const tls = conn.tls;
  if (!tls) return { type: "starttls-not-supported", detail: `${host} offers no STARTTLS` };
  if (tls.verified) return undefined;
  const code = tls.verifyError ?? "unknown";
  return { type: certificateFailureType(code), detail: `${host}'s certificate does not verify (${code})` };
}

const outsidePolicy = (host: string): TlsFailure => ({
  type: "validation-failure",
  detail: `${host} is not an MX host the MTA-STS policy names`,
});

/** A group not sent because a receiver's MTA-STS policy was not met: deferred, never in clear. */
function stsRefusal(
  status: "4.7.4" | "4.7.5",
  why: string,
  remoteMta: string | null,
  domain?: string,
): Omit<AttemptReport, "deliveryId" | "durationMs"> {
  const policy = domain ? `the MTA-STS policy of ${domain} requires TLS with a valid certificate` : "";
  return {
    outcome: "deferred",
    status,
    reply: `451 ${status} ${why}${policy ? `; ${policy}` : ""}: not sent (MTA-STS)`,
    remoteMta,
  };
}

/** Jobs of one message (and one envelope sender) go in one transaction, in the order they came. */
function transactions(jobs: Job[]): Job[][] {
  const byMessage = new Map<string, Job[]>();
  for (const j of jobs) byMessage.set(j.message.id, [...(byMessage.get(j.message.id) ?? []), j]);
  return [...byMessage.values()];
}

function failureReport(host: Host, err: unknown): Omit<AttemptReport, "deliveryId" | "durationMs"> {
  if (err instanceof SmtpClientError && err.reply) {
    // A greeting or command refused outright: still a host problem, so deferred, never bounced.
    return {
      outcome: "deferred",
      status: err.reply.enhanced ?? "4.4.2",
      reply: formatReply(err.reply),
      remoteMta: host.name,
    };
  }
  return {
    outcome: "deferred",
    status: err instanceof SmtpClientError && err.kind === "timeout" ? "4.4.2" : "4.4.1",
    reply: `${host.name}: ${(err as Error).message}`,
    remoteMta: null,
  };
}
