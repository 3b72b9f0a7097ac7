// Which courier carries a target. One courier per destination kind, made once and reused.
import type { Config } from "../config.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { Directory } from "../domains/directory.ts";
import { formatTarget } from "../domains/targets.ts";
import { domainOf } from "../mail/address.ts";
import { srsForward } from "../mail/srs.ts";
import type { StsPolicies } from "../mta-sts/policies.ts";
import type { ClaimedTarget } from "../queue/claim.ts";
import type { StartTls } from "../smtp/client-stream.ts";
import type { Courier, Job } from "./courier.ts";
import { reportAll } from "./courier.ts";
import type { Shaper } from "./shaping.ts";
import { fixedPlan, mxPlan, type Plan, parseHostPort, SmtpCourier, type TlsSession } from "./smtp-courier.ts";
import { WebhookCourier } from "./webhook.ts";

/** A mailbox delivery is done when it is written; one that reaches the scheduler is just marked. */
const mailboxCourier: Courier = {
  async deliver(jobs: Job[]) {
    return reportAll(jobs, {
      outcome: "delivered",
      status: "2.0.0",
      reply: "kept in mailbox",
      remoteMta: null,
      durationMs: 0,
    });
  },
};

/** A row whose target no longer parses: deferred with the reason until someone fixes or removes it. */
const unreadableCourier: Courier = {
  async deliver(jobs: Job[]) {
    const { target } = jobs[0]!.delivery;
    const why = target.kind === "unreadable" ? `"${target.text}": ${target.problem}` : target.kind;
    return reportAll(jobs, {
      outcome: "deferred",
      status: "4.3.5",
      reply: `local error: the stored target ${why}`,
      remoteMta: null,
      durationMs: 0,
    });
  },
};

export interface CourierParts {
  resolver: Resolver;
  directory: Directory;
  /** Outbound shaping for mail routed by MX (mx and forward targets). */
  shaper?: Shaper;
  /** Receivers' MTA-STS policies, for mail routed by MX; none: not looked for. */
  sts?: StsPolicies;
  /** How STARTTLS is done (which roots a certificate is checked against). */
  startTls?: StartTls;
  onTlsSession?: (session: TlsSession) => void;
  /** Stores TLS reports mailed to our domains. */
  tlsReports: Courier;
}

export function courierRegistry(
  config: Pick<
    Config,
    "hostname" | "smarthost" | "smarthostAuth" | "outboundPort" | "allowPrivateDestinations"
  >,
  { resolver, directory, shaper, sts, startTls, onTlsSession, tlsReports }: CourierParts,
): (target: ClaimedTarget) => Courier {
  const lookupSts = sts && ((domain: string) => sts.lookup(domain));
  const smtp = (plan: (job: Job) => Promise<Plan>, auth?: Config["smarthostAuth"]) =>
    new SmtpCourier({ helo: config.hostname, resolver, plan, auth, shaper, startTls, onTlsSession });
  const internet = config.smarthost
    ? smtp(fixedPlan(parseHostPort(config.smarthost, config.outboundPort)), config.smarthostAuth)
    : smtp(
        mxPlan({
          resolver,
          port: config.outboundPort,
          allowPrivate: config.allowPrivateDestinations,
          sts: lookupSts,
        }),
      );
  const forwardAddress = (job: Job) => {
    const { target } = job.delivery;
    if (target.kind !== "forward") throw new Error(`not a forward target: ${target.kind}`);
    return target.address;
  };
  const forward = new SmtpCourier({
    helo: config.hostname,
    resolver,
    plan: config.smarthost
      ? fixedPlan(parseHostPort(config.smarthost, config.outboundPort))
      : mxPlan({
          resolver,
          port: config.outboundPort,
          allowPrivate: config.allowPrivateDestinations,
          recipientOf: forwardAddress,
          sts: lookupSts,
        }),
    auth: config.smarthost ? config.smarthostAuth : undefined,
    shaper,
    startTls,
    onTlsSession,
    // SRS at the domain the mail was addressed to, so the next hop's SPF check sees our domain.
    rewrite: async (job) => {
      const ourDomain = domainOf(job.delivery.rcpt);
      const secret = await directory.srsSecret(ourDomain);
      const mailFrom = secret ? srsForward(job.message.mailFrom, ourDomain, secret) : job.message.mailFrom;
      return { mailFrom, rcpt: forwardAddress(job) };
    },
  });
  const webhook = new WebhookCourier((rcpt, target) => directory.secretFor(rcpt, target));
  const relays = new Map<string, Courier>();
  return (target) => {
    switch (target.kind) {
      case "mx":
        return internet;
      case "mailbox":
        return mailboxCourier;
      case "tls-reports":
        return tlsReports;
      case "webhook":
        return webhook;
      case "forward":
        return forward;
      case "unreadable":
        return unreadableCourier;
      case "relay": {
        const key = formatTarget(target);
        let courier = relays.get(key);
        if (!courier) {
          courier = new SmtpCourier({
            helo: config.hostname,
            resolver,
            plan: fixedPlan({ name: target.host, port: target.port }),
            lmtp: target.lmtp,
          });
          relays.set(key, courier);
        }
        return courier;
      }
    }
  };
}
