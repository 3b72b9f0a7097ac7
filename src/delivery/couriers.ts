// Which courier carries a target. One courier per destination kind, made once and reused.
import type { Config } from "../config.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { Directory } from "../domains/directory.ts";
import { parseTarget } from "../domains/targets.ts";
import { domainOf } from "../mail/address.ts";
import { srsForward } from "../mail/srs.ts";
import type { Courier, Job } from "./courier.ts";
import { reportAll } from "./courier.ts";
import { fixedPlan, mxPlan, type Plan, parseHostPort, SmtpCourier } from "./smtp-courier.ts";
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

export function courierRegistry(
  config: Pick<
    Config,
    "hostname" | "smarthost" | "smarthostAuth" | "outboundPort" | "allowPrivateDestinations"
  >,
  resolver: Resolver,
  directory: Directory,
): (target: string) => Courier {
  const smtp = (plan: (job: Job) => Promise<Plan>, auth?: Config["smarthostAuth"]) =>
    new SmtpCourier({ helo: config.hostname, resolver, plan, auth });
  const internet = config.smarthost
    ? smtp(fixedPlan(parseHostPort(config.smarthost, config.outboundPort)), config.smarthostAuth)
    : smtp(mxPlan({ resolver, port: config.outboundPort, allowPrivate: config.allowPrivateDestinations }));
  const forwardAddress = (job: Job) => job.delivery.target.slice("forward:".length);
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
        }),
    auth: config.smarthost ? config.smarthostAuth : undefined,
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
    if (target === "mx") return internet;
    if (target === "mailbox") return mailboxCourier;
    if (target.startsWith("webhook:")) return webhook;
    if (target.startsWith("forward:")) return forward;
    if (target.startsWith("relay:")) {
      let courier = relays.get(target);
      if (!courier) {
        const relay = parseTarget(target);
        if (relay.kind !== "relay") throw new Error(`not a relay target: ${target}`);
        courier = new SmtpCourier({
          helo: config.hostname,
          resolver,
          plan: fixedPlan({ name: relay.host, port: relay.port }),
          lmtp: relay.lmtp,
        });
        relays.set(target, courier);
      }
      return courier;
    }
    throw new Error(`no courier for target ${target}`);
  };
}
