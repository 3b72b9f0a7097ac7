// The session's questions answered from the users table, the router and the intake: this module
// only turns their answers into SMTP replies.
import { eq } from "drizzle-orm";
import { isKeyName, verifyKey } from "../auth/keys.ts";
import { type LockoutPolicy, lockedOutUntil, recordAuthFailure } from "../auth/lockout.ts";
import { hashPassword, verifyPassword } from "../auth/passwords.ts";
import { type SenderRights, senderRights } from "../auth/senders.ts";
import { VerifiedLogins } from "../auth/verified-logins.ts";
import type { Db } from "../db/open.ts";
import { users } from "../db/schema.ts";
import type { Router, Routing } from "../delivery/route.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { Directory } from "../domains/directory.ts";
import type { Logger } from "../log.ts";
import { domainOf, patternMatches } from "../mail/address.ts";
import { type MailDomainStatus, mailDomainStatus } from "../mail/domain-checks.ts";
import type { LimitKind } from "../metrics/postern.ts";
import { checkDnsbl, type DnsblVerdict } from "../net/dnsbl.ts";
import { type Intake, MessageRejected, type Refusal } from "../queue/intake.ts";
import { takeQuota } from "../queue/quotas.ts";
import { RateWindow } from "./rate-window.ts";
import { R, type Reply } from "./reply.ts";
import { MessageRefused, type PortKind, type SessionBackend } from "./session.ts";

export interface BackendDeps {
  db: Db;
  directory: Directory;
  router: Router;
  intake: Intake;
  /** Set when inbound checks are on: the sender's domain is looked up at MAIL. */
  resolver: Resolver | undefined;
  /** Counts messages accepted, per port, refusals by limit, DNSBL look-ups by outcome. */
  metrics?: {
    messageReceived(port: PortKind): void;
    limitRefused(limit: LimitKind): void;
    dnsblChecked(result: DnsblVerdict["kind"]): void;
  };
  /** POSTERN_DNSBL_ZONES, looked up with this resolver (whatever POSTERN_DNS_CHECKS says). */
  dnsbl?: { resolver: Resolver; zones: readonly string[] };
  /** POSTERN_AUTH_LOCKOUT_FAILURES and its windows. */
  lockout: LockoutPolicy;
  /** POSTERN_INBOUND_PER_MINUTE: MAIL commands per client IP per minute on port 25; 0 = none. */
  inboundPerMinute: number;
  /** POSTERN_SEND_LIMIT_PER_HOUR: the quota of a user or key without its own; 0 = none. */
  sendLimitPerHour: number;
  log?: Logger;
}

/** How long a login's sender rights (From patterns, quota) are used before they are read again. */
const RIGHTS_MAX_AGE_MS = 1000;

export function createSessionBackend(deps: BackendDeps): SessionBackend {
  const { db, directory, router, intake, resolver, lockout } = deps;
  const inboundRate = deps.inboundPerMinute > 0 ? new RateWindow(deps.inboundPerMinute, 60_000) : undefined;
  // Unknown logins are checked against this hash too, so their answer takes as long as a wrong password.
  let decoy: Promise<string> | undefined;
  const verified = new VerifiedLogins();

  const findUser = async (address: string) => {
    const [user] = await db.select().from(users).where(eq(users.address, address.toLowerCase()));
    return user;
  };
  // A login's rights, read at most once a second: MAIL, each RCPT and DATA all ask for them.
  const recentRights = new Map<string, { at: number; rights: Promise<SenderRights | undefined> }>();
  const rightsOf = (login: string): Promise<SenderRights | undefined> => {
    const now = Date.now();
    const hit = recentRights.get(login);
    if (hit && now - hit.at < RIGHTS_MAX_AGE_MS) return hit.rights;
    if (recentRights.size >= 10_000) recentRights.clear();
    const rights = senderRights(db, login, deps.sendLimitPerHour);
    recentRights.set(login, { at: now, rights });
    // a failed read is the asker's error, not an answer to keep
    rights.catch(() => {
      if (recentRights.get(login)?.rights === rights) recentRights.delete(login);
    });
    return rights;
  };
  const maySendAs = async (login: string) => (await rightsOf(login))?.maySendAs ?? [];

  /** The DNSBL zone that lists a port-25 client, if any; a failed look-up lets it through. */
  const listedBy = async (ip: string): Promise<string | undefined> => {
    if (!deps.dnsbl || deps.dnsbl.zones.length === 0) return undefined;
    const verdict = await checkDnsbl(deps.dnsbl.resolver, ip, deps.dnsbl.zones);
    deps.metrics?.dnsblChecked(verdict.kind);
    if (verdict.kind === "error")
      deps.log?.warn("DNSBL look-up failed: mail let through", {
        ip,
        zone: verdict.zone,
        code: verdict.code,
      });
    if (verdict.kind !== "listed") return undefined;
    deps.metrics?.limitRefused("dnsbl");
    deps.log?.info("client listed by a DNSBL", { ip, zone: verdict.zone });
    return verdict.zone;
  };

  /** The canonical login for these credentials, or undefined. */
  const verifyLogin = async (username: string, password: string): Promise<string | undefined> => {
    // An application's key: user name = the key's name, password = the key.
    if (isKeyName(username)) return (await verifyKey(db, username, password))?.name;
    const user = await findUser(username);
    if (user && verified.holds(user.address, password, user.passwordHash)) return user.address;
    decoy ??= hashPassword("decoy password for unknown users");
    const ok = await verifyPassword(password, user?.passwordHash ?? (await decoy));
    if (!user || !ok) return undefined;
    verified.remember(user.address, password, user.passwordHash);
    return user.address;
  };

  return {
    async authenticate(username, password, clientIp) {
      if (lockout.failures > 0 && (await lockedOutUntil(db, clientIp))) {
        deps.metrics?.limitRefused("auth-lockout");
        return { kind: "locked-out" };
      }
      const login = await verifyLogin(username, password);
      if (login !== undefined) return { kind: "ok", login };
      const until = lockout.failures > 0 ? await recordAuthFailure(db, clientIp, lockout) : undefined;
      if (until) deps.log?.warn("AUTH locked out", { ip: clientIp, failures: lockout.failures, until });
      return { kind: "wrong" };
    },

    async checkSender(address, ctx) {
      if (!ctx.authUser) {
        if (ctx.port !== "smtp") return undefined;
        const unknown =
          address !== "" && resolver && !(await directory.isLocalDomain(domainOf(address)))
            ? senderDomainReply(await mailDomainStatus(resolver, domainOf(address)))
            : undefined;
        if (unknown) return unknown;
        const listed = await listedBy(ctx.clientIp);
        if (listed) return R.dnsblListed(ctx.clientIp, listed);
        // A transaction that may go on counts against its client's rate.
        if (inboundRate && !inboundRate.take(ctx.clientIp)) {
          deps.metrics?.limitRefused("inbound-rate");
          return R.inboundRateLimited();
        }
        return undefined;
      }
      if (address === "") return undefined;
      const sender = address.toLowerCase();
      const allowed = (await maySendAs(ctx.authUser)).some((p) => patternMatches(p, sender));
      return allowed ? undefined : R.senderNotOwned(address);
    },

    async checkRecipient(address, ctx) {
      const routing = await router.route(address, {
        mailFrom: ctx.mailFrom,
        mayRelay: Boolean(ctx.authUser),
        checkDomain: true,
        verifyInside: true,
        suppressible: Boolean(ctx.authUser) && ctx.mailFrom !== "",
      });
      if (!routing.ok) return { ok: false, reply: recipientReply(routing) };
      // A recipient that would go counts against its sender's quota (all nodes share the count).
      const quota = ctx.authUser ? (await rightsOf(ctx.authUser))?.quota : undefined;
      if (quota) {
        const taken = await takeQuota(db, quota, 1);
        if (!taken.ok) {
          deps.metrics?.limitRefused("send-quota");
          deps.log?.info("send quota reached", {
            who: quota.subject,
            limit: quota.limit,
            until: taken.retryAt,
          });
          return { ok: false, reply: R.sendQuotaReached(quota.limit, taken.retryAt) };
        }
      }
      return { ok: true, target: routing.target };
    },

    async accept(id, envelope, received) {
      const common = {
        id,
        mailFrom: envelope.mailFrom,
        content: received,
        client: { ip: envelope.remoteIp, helo: envelope.helo },
        door: { port: envelope.port },
        envid: envelope.mailParams.envid,
        ret: envelope.mailParams.ret,
        recipients: envelope.recipients.map((r) => ({
          address: r.address,
          target: r.target,
          orcpt: r.params.orcpt,
          notify: r.params.notify?.join(","),
        })),
      };
      try {
        await intake.accept(
          envelope.authUser
            ? {
                ...common,
                kind: "submission",
                submitter: envelope.authUser,
                maySendAs: await maySendAs(envelope.authUser),
              }
            : { ...common, kind: "inbound" },
        );
      } catch (err) {
        if (err instanceof MessageRejected) throw new MessageRefused(refusalReply(err.refusal));
        throw err;
      }
      deps.metrics?.messageReceived(envelope.port);
    },
  };
}

function recipientReply(routing: Extract<Routing, { ok: false }>): Reply {
  switch (routing.refusal) {
    case "no-such-user":
      return R.unknownUser();
    case "relay-denied":
      return R.relayDenied();
    case "no-mail-domain":
      return R.recipientDomainUnknown();
    case "domain-unresolved":
      return R.recipientDomainUnresolved();
    case "suppressed":
      return R.suppressed(routing.why);
    case "refused-inside": {
      const { code, enhanced, text } = routing.reply;
      return R.refusedInside(code, enhanced, text);
    }
  }
}

function refusalReply(refusal: Refusal): Reply {
  switch (refusal.reason) {
    case "too-many-hops":
      return R.tooManyHops();
    case "no-from":
      return R.noFromHeader();
    case "many-from":
      return R.manyFromHeaders();
    case "from-not-owned":
      return R.senderNotOwned(refusal.address);
    case "dmarc-reject":
      return R.dmarcReject(refusal.domain);
    case "dmarc-unresolved":
      return R.dmarcUnresolved();
  }
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
