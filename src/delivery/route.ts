// Where each recipient's copy goes, decided in one place for every way mail comes in: an SMTP
// RCPT, `/api/send` and `postern send`, and the DSNs the queue writes. Suppression and quotas
// join here, once.

import type { Resolver } from "../dns/resolver.ts";
import type { Directory } from "../domains/directory.ts";
import { tlsReportAddress } from "../domains/records.ts";
import type { Target } from "../domains/targets.ts";
import { domainOf } from "../mail/address.ts";
import { type MailDomainStatus, mailDomainStatus } from "../mail/domain-checks.ts";
import { srsReverse } from "../mail/srs.ts";
import type { Reply as PeerReply } from "../smtp/client.ts";
import type { RecipientVerifier } from "./recipient-verifier.ts";

export type Routing =
  | { ok: true; target: Target }
  /** A local domain, but no route and no user for the address. */
  | { ok: false; refusal: "no-such-user" }
  /** Not one of our domains, and the sender may not send beyond them. */
  | { ok: false; refusal: "relay-denied" }
  /** A domain that cannot receive mail: it does not exist or has a null MX (RFC 7505). */
  | { ok: false; refusal: "no-mail-domain" }
  /** DNS could not say whether the domain receives mail: try again later. */
  | { ok: false; refusal: "domain-unresolved" }
  /** The inner server of the address's relay route does not know it. */
  | { ok: false; refusal: "refused-inside"; reply: PeerReply }
  /** The sending domain no longer mails this address (a hard bounce, or by hand). */
  | { ok: false; refusal: "suppressed"; why: string };

export interface RouteRequest {
  /** The envelope sender: "" for a bounce, which alone may reach an SRS address. */
  mailFrom: string;
  /** The sender may send beyond our domains (authenticated, or the operator's own injection). */
  mayRelay: boolean;
  /** Look up a foreign domain now, so a typo fails at once rather than as a bounce days later. */
  checkDomain: boolean;
  /** Ask a relay route's inner server whether it knows the address (an SMTP RCPT). */
  verifyInside: boolean;
  /** Mail going out from one of our senders: its domain's suppression list applies. */
  suppressible?: boolean;
}

export interface RouterDeps {
  directory: Directory;
  /** For `checkDomain`; without one (DNS checks off) the domain is not looked up. */
  resolver: Resolver | undefined;
  verifier: RecipientVerifier | undefined;
  /** Why mail from `mailFrom` to `address` is refused as suppressed; undefined: it is not. */
  suppressed?: (mailFrom: string, address: string) => Promise<string | undefined>;
}

export class Router {
  constructor(private readonly deps: RouterDeps) {}

  async route(address: string, request: RouteRequest): Promise<Routing> {
    const { directory, resolver, verifier } = this.deps;
    const domain = domainOf(address);
    if (!(await directory.isLocalDomain(domain))) {
      // Never an open relay: only a sender who may relay sends beyond our domains.
      if (!request.mayRelay) return { ok: false, refusal: "relay-denied" };
      const why = request.suppressible && (await this.deps.suppressed?.(request.mailFrom, address));
      if (why) return { ok: false, refusal: "suppressed", why };
      if (request.checkDomain && resolver) {
        const refusal = domainRefusal(await mailDomainStatus(resolver, domain));
        if (refusal) return { ok: false, refusal };
      }
      return { ok: true, target: { kind: "mx" } };
    }
    // A bounce to an address our forwarding made up goes back to the original sender: from the
    // null sender only, or anyone who saw an SRS address could relay through it.
    if (request.mailFrom === "" && address.toUpperCase().startsWith("SRS0=")) {
      const secret = await directory.srsSecret(domain);
      const original = secret ? srsReverse(address, secret) : undefined;
      if (original) return { ok: true, target: { kind: "forward", address: original } };
    }
    // RFC 8460 reports about our domains, to the address our _smtp._tls records name: kept.
    if (address === tlsReportAddress(domain)) return { ok: true, target: { kind: "tls-reports" } };
    const route = await directory.routeFor(address);
    if (!route) return { ok: false, refusal: "no-such-user" };
    const { target } = route;
    if (target.kind === "relay" && request.verifyInside && verifier) {
      const verdict = await verifier.verify(target, address);
      if (verdict.kind === "refused") return { ok: false, refusal: "refused-inside", reply: verdict.reply };
    }
    return { ok: true, target };
  }
}

/** Where a DSN to `address` goes (from the null sender, to any domain); undefined: nowhere. */
export async function bounceTarget(router: Router, address: string): Promise<Target | undefined> {
  const routing = await router.route(address, {
    mailFrom: "",
    mayRelay: true,
    checkDomain: false,
    verifyInside: false,
  });
  return routing.ok ? routing.target : undefined;
}

function domainRefusal(status: MailDomainStatus): "no-mail-domain" | "domain-unresolved" | undefined {
  switch (status) {
    case "exists":
      return undefined;
    case "temporary":
      return "domain-unresolved";
    case "null-mx":
    case "no-domain":
      return "no-mail-domain";
  }
}
