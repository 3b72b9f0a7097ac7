// The session's questions answered from the directory, the users table and the queue.
import { eq } from "drizzle-orm";
import { hashPassword, verifyPassword } from "../auth/passwords.ts";
import type { Db } from "../db/open.ts";
import { users } from "../db/schema.ts";
import type { RecipientVerifier } from "../delivery/recipient-verifier.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { Directory } from "../domains/directory.ts";
import type { Logger } from "../log.ts";
import { domainOf, normalizeAddress, patternMatches } from "../mail/address.ts";
import {
  type AuthCheckKind,
  type AuthVerdict,
  checkInbound,
  stripForgedAuthResults,
  VerdictCache,
} from "../mail/authcheck.ts";
import { type MailDomainStatus, mailDomainStatus } from "../mail/domain-checks.ts";
import { headerValue, readHeaders } from "../mail/headers.ts";
import { signIfLocal } from "../mail/signing.ts";
import { srsReverse } from "../mail/srs.ts";
import { fixUpSubmission } from "../mail/submission.ts";
import type { Enqueuer } from "../queue/enqueue.ts";
import { R, type Reply } from "./reply.ts";
import { MessageRefused, type PortKind, type SessionBackend } from "./session.ts";

/** Received headers a message may carry (Postfix's hopcount_limit). */
const MAX_HOPS = 50;

export interface BackendDeps {
  db: Db;
  directory: Directory;
  enqueuer: Enqueuer;
  hostname: string;
  /** Set when inbound checks are on: address checks and SPF/DKIM/DMARC/ARC go through it. */
  resolver: Resolver | undefined;
  dmarcPolicy: "enforce" | "monitor";
  /** Asks the inner server of a relay route whether a recipient exists, before taking its mail. */
  verifier?: RecipientVerifier;
  /** Counts messages accepted, per port, and inbound checks by how they were made. */
  metrics?: { messageReceived(port: PortKind): void; authChecked(how: AuthCheckKind): void };
  /** A line per accepted message. */
  log?: Logger;
}

export function createSessionBackend(deps: BackendDeps): SessionBackend {
  const { db, directory, enqueuer, hostname, resolver } = deps;
  const verdicts = resolver && new VerdictCache();
  // Unknown logins are checked against this hash too, so their answer takes as long as a wrong password.
  let decoy: Promise<string> | undefined;

  const findUser = async (address: string) => {
    const [user] = await db.select().from(users).where(eq(users.address, address.toLowerCase()));
    return user;
  };

  return {
    async authenticate(username, password) {
      const user = await findUser(username);
      decoy ??= hashPassword("decoy password for unknown users");
      const ok = await verifyPassword(password, user?.passwordHash ?? (await decoy));
      return user && ok ? user.address : undefined;
    },

    async checkSender(address, ctx) {
      if (!ctx.authUser) {
        if (ctx.port !== "smtp" || address === "" || !resolver) return undefined;
        if (await directory.isLocalDomain(domainOf(address))) return undefined;
        return senderDomainReply(await mailDomainStatus(resolver, domainOf(address)));
      }
      if (address === "") return undefined;
      const user = await findUser(ctx.authUser);
      const sender = address.toLowerCase();
      const allowed = user && [user.address, ...user.maySendAs].some((p) => patternMatches(p, sender));
      return allowed ? undefined : R.senderNotOwned(address);
    },

    async checkRecipient(address, ctx) {
      if (await directory.isLocalDomain(domainOf(address))) {
        // A bounce to an address our forwarding made up goes back to the original sender: null
        // sender only, or anyone who saw an SRS address could relay through it.
        const secret =
          ctx.mailFrom === "" &&
          address.toUpperCase().startsWith("SRS0=") &&
          (await directory.srsSecret(domainOf(address)));
        const original = secret ? srsReverse(address, secret) : undefined;
        if (original) return { ok: true, target: { kind: "forward", address: original } };
        const route = await directory.routeFor(address);
        if (!route) return { ok: false, reply: R.unknownUser() };
        const { target } = route;
        if (target.kind === "relay" && deps.verifier) {
          const verdict = await deps.verifier.verify(target, address);
          if (verdict.kind === "refused") {
            const { code, enhanced, text } = verdict.reply;
            return { ok: false, reply: R.refusedInside(code, enhanced, text) };
          }
        }
        return { ok: true, target };
      }
      // Never an open relay: only an authenticated session may send beyond our domains.
      if (!ctx.authUser) return { ok: false, reply: R.relayDenied() };
      // A typo in the domain fails now, not as a bounce days later.
      const refusal = resolver && recipientDomainReply(await mailDomainStatus(resolver, domainOf(address)));
      return refusal ? { ok: false, reply: refusal } : { ok: true, target: { kind: "mx" } };
    },

    async accept(id, envelope, received) {
      const receivedHeaders = readHeaders(received);
      // A mail loop (forwards pointing at each other) ends here (RFC 5321 6.3).
      if (receivedHeaders.filter(([n]) => n === "received").length > MAX_HOPS) {
        throw new MessageRefused(R.tooManyHops());
      }
      // Whatever else is checked: no field claiming our authserv-id leaves here but our own
      // (RFC 8601 5), also with the DNS checks off and on the submission ports.
      let content = stripForgedAuthResults(received, hostname);
      let authResults: (AuthVerdict & { quarantine: boolean }) | undefined;
      if (envelope.authUser) {
        const user = await findUser(envelope.authUser);
        const maySendAs = user ? [user.address, ...user.maySendAs] : [];
        const fixed = fixUpSubmission(content, maySendAs, hostname, new Date());
        if (!fixed.ok) {
          throw new MessageRefused(
            fixed.problem === "no-from"
              ? R.noFromHeader()
              : fixed.problem === "many-from"
                ? R.manyFromHeaders()
                : R.senderNotOwned(fixed.address),
          );
        }
        content = await signIfLocal(directory, fixed.content);
      } else if (resolver) {
        // Mail we forward carries our ARC seal, made with the key of the domain it was sent to.
        const forwarded = envelope.recipients.find((r) => r.target.kind === "forward");
        const seal = forwarded && (await directory.signingKey(domainOf(forwarded.address)));
        const outcome = await checkInbound(content, {
          ip: envelope.remoteIp,
          helo: envelope.helo,
          mailFrom: envelope.mailFrom,
          hostname,
          resolver,
          verdicts,
          seal,
        });
        deps.metrics?.authChecked(outcome.how);
        if (deps.dmarcPolicy === "enforce") {
          if (outcome.dmarcAction === "reject")
            throw new MessageRefused(R.dmarcReject(outcome.verdict.dmarc.domain ?? "the From domain"));
          // DNS did not say what the From domain asks for: whether to refuse is not known yet
          if (outcome.verdict.dmarc.result === "temperror") throw new MessageRefused(R.dmarcUnresolved());
        }
        authResults = { ...outcome.verdict, quarantine: outcome.dmarcAction === "quarantine" };
        content = Buffer.concat([Buffer.from(outcome.headers, "latin1"), content]);
      }
      // Submission fix-ups may add a Message-ID; inbound mail only gains trace fields on top, so
      // its Message-ID and Subject are those already read.
      const headers = envelope.authUser ? readHeaders(content) : receivedHeaders;
      await enqueuer.enqueue({
        id,
        direction: envelope.authUser ? "outbound" : "inbound",
        mailFrom: envelope.mailFrom,
        helo: envelope.helo,
        clientIp: envelope.remoteIp,
        authUser: envelope.authUser,
        raw: content,
        authResults,
        messageIdHeader: headerValue(headers, "message-id"),
        subject: headerValue(headers, "subject"),
        envid: envelope.mailParams.envid,
        ret: envelope.mailParams.ret,
        deliveries: envelope.recipients.map((r) => ({
          rcpt: normalizeAddress(r.address),
          target: r.target,
          orcpt: r.params.orcpt,
          notify: r.params.notify?.join(","),
        })),
      });
      deps.metrics?.messageReceived(envelope.port);
      deps.log?.info("message accepted", {
        id,
        from: envelope.mailFrom,
        rcpts: envelope.recipients.length,
        size: content.length,
        port: envelope.port,
        ip: envelope.remoteIp,
        user: envelope.authUser,
        spf: authResults?.spf,
        dkim: authResults?.dkim.map((d) => `${d.domain}:${d.result}`).join(" "),
        dmarc: authResults?.dmarc.result,
      });
    },
  };
}

function senderDomainReply(status: MailDomainStatus): Reply | undefined {
  switch (status) {
    case "exists":
      return undefined;
    case "temporary":
      return R.senderDomainUnresolved();
    case "null-mx":
      return R.senderDomainNullMx();
    case "no-domain":
      return R.senderDomainUnknown();
  }
}

function recipientDomainReply(status: MailDomainStatus): Reply | undefined {
  switch (status) {
    case "exists":
      return undefined;
    case "temporary":
      return R.recipientDomainUnresolved();
    case "null-mx":
    case "no-domain":
      return R.recipientDomainUnknown();
  }
}
