// One way from "a message arrived" to "its rows are committed", whichever door it came through:
// SMTP on 25 (inbound), SMTP with AUTH on 587/465, `/api/send` and `postern send` (submissions).
// Each door is a thin adapter that turns a Refusal into its own answer (an SMTP reply, an HTTP
// 400, a CLI error line).
import type { Resolver } from "../dns/resolver.ts";
import type { Directory } from "../domains/directory.ts";
import type { Target } from "../domains/targets.ts";
import type { Logger } from "../log.ts";
import { domainOf, normalizeAddress } from "../mail/address.ts";
import {
  type AuthCheckKind,
  type AuthVerdict,
  checkInbound,
  stripForgedAuthResults,
  VerdictCache,
} from "../mail/authcheck.ts";
import { type DeliveryReport, isDeliveryReport, readDeliveryReport } from "../mail/delivery-report.ts";
import { headerValue, readHeaders } from "../mail/headers.ts";
import { signIfLocal } from "../mail/signing.ts";
import { fixUpSubmission } from "../mail/submission.ts";
import type { PortKind } from "../smtp/session.ts";
import type { ReportedBounces } from "./bounce-reports.ts";
import type { Enqueuer } from "./enqueue.ts";

/** Received fields a message may carry (Postfix's hopcount_limit): past it, a loop. */
const MAX_HOPS = 50;

/** How mail that did not come by SMTP came: the API, the CLI, or our own TLS reports. */
export type InjectedVia = "api" | "cli" | "tlsrpt";

export interface ArrivingRecipient {
  address: string;
  target: Target;
  /** DSN parameters of RCPT TO (RFC 3461), as given. */
  orcpt?: string | undefined;
  notify?: string | undefined;
}

interface ArrivalBase {
  id: string;
  mailFrom: string;
  recipients: ArrivingRecipient[];
  /** The message as it came, with our Received field on top. */
  content: Uint8Array;
  envid?: string | undefined;
  ret?: "FULL" | "HDRS" | undefined;
  /** The SMTP client, when it came by SMTP. */
  client?: { ip: string; helo: string } | undefined;
  /** The door it came through, for the log line. */
  door: { port: PortKind } | { via: InjectedVia };
}

export type Arrival =
  /** From another MTA, unauthenticated: checked (SPF, DKIM, DMARC, ARC) and delivered to routes. */
  | (ArrivalBase & { kind: "inbound"; client: { ip: string; helo: string } })
  /** From a user (or the operator's injection), to be fixed up, DKIM-signed and sent on. */
  | (ArrivalBase & {
      kind: "submission";
      /** The login, or `api` / `cli` for the operator's injections. */
      submitter: string;
      /** Patterns the submitter may use in From and Sender. */
      maySendAs: string[];
    });

export type Refusal =
  | { reason: "too-many-hops" }
  | { reason: "no-from" }
  | { reason: "many-from" }
  | { reason: "from-not-owned"; address: string }
  | { reason: "dmarc-reject"; domain: string }
  /** The From domain's DMARC record could not be looked up: whether to refuse is not known yet. */
  | { reason: "dmarc-unresolved" };

/** The message is refused for a reason of its own (not a failure of ours): nothing was stored. */
export class MessageRejected extends Error {
  constructor(readonly refusal: Refusal) {
    super(`message refused: ${refusal.reason}`);
  }
}

export interface IntakeDeps {
  directory: Directory;
  enqueuer: Enqueuer;
  /** Our host name: the authserv-id, and the right-hand side of Message-IDs we add. */
  hostname: string;
  /** Set when inbound checks are on (POSTERN_DNS_CHECKS). */
  resolver: Resolver | undefined;
  dmarcPolicy: "enforce" | "monitor";
  /** Counts inbound checks by how they were made. */
  onAuthChecked?(how: AuthCheckKind): void;
  /** A line per accepted message. */
  log?: Logger;
  /** What an inbound delivery report says of mail we sent (bounce-reports.ts). */
  reportedBounces?(report: DeliveryReport, at: Date): Promise<ReportedBounces | undefined>;
}

export interface Accepted {
  /** The stored content (with what we added). */
  size: number;
  authResults: AuthVerdict | undefined;
}

export class Intake {
  private readonly verdicts: VerdictCache | undefined;

  constructor(private readonly deps: IntakeDeps) {
    this.verdicts = deps.resolver && new VerdictCache();
  }

  /** Checks, completes and stores the message; resolves once committed, or throws MessageRejected. */
  async accept(arrival: Arrival, now = new Date()): Promise<Accepted> {
    const { hostname } = this.deps;
    const arrived = readHeaders(arrival.content);
    // A mail loop (forwards pointing at each other) ends here (RFC 5321 6.3).
    if (arrived.filter(([n]) => n === "received").length > MAX_HOPS) {
      throw new MessageRejected({ reason: "too-many-hops" });
    }
    // Whatever else is checked: no field claiming our authserv-id leaves here but our own
    // (RFC 8601 5), also with the DNS checks off and on the submission ports.
    let content = stripForgedAuthResults(arrival.content, hostname);
    let authResults: (AuthVerdict & { quarantine: boolean }) | undefined;
    if (arrival.kind === "submission") {
      content = await prepareSubmission(this.deps.directory, content, arrival.maySendAs, hostname, now);
    } else if (this.deps.resolver) {
      const checked = await this.authenticate(arrival, content, this.deps.resolver);
      authResults = checked.verdict;
      content = checked.content;
    }
    // Submission fix-ups may add a Message-ID; inbound mail only gains trace fields on top, so
    // its Message-ID and Subject are those already read.
    const headers = arrival.kind === "submission" ? readHeaders(content) : arrived;
    const reported = arrival.kind === "inbound" ? await this.reported(content, headers, now) : undefined;
    await this.deps.enqueuer.enqueue({
      id: arrival.id,
      direction: arrival.kind === "submission" ? "outbound" : "inbound",
      mailFrom: arrival.mailFrom,
      helo: arrival.client?.helo,
      clientIp: arrival.client?.ip,
      authUser: arrival.kind === "submission" ? arrival.submitter : undefined,
      raw: content,
      authResults,
      messageIdHeader: headerValue(headers, "message-id"),
      subject: headerValue(headers, "subject"),
      envid: arrival.envid,
      ret: arrival.ret,
      reported,
      deliveries: arrival.recipients.map((r) => ({
        rcpt: normalizeAddress(r.address),
        target: r.target,
        orcpt: r.orcpt,
        notify: r.notify,
      })),
    });
    this.deps.log?.info("message accepted", {
      id: arrival.id,
      from: arrival.mailFrom,
      rcpts: arrival.recipients.length,
      size: content.length,
      ...arrival.door,
      ip: arrival.client?.ip,
      user: arrival.kind === "submission" ? arrival.submitter : undefined,
      spf: authResults?.spf,
      dkim: authResults?.dkim.map((d) => `${d.domain}:${d.result}`).join(" "),
      dmarc: authResults?.dmarc.result,
      ...(reported ? { reportOn: reported.messageId, bounced: reported.events.length } : {}),
    });
    return { size: content.length, authResults };
  }

  /** A delivery report about mail we sent, read; a report we cannot read is only mail. */
  private async reported(
    content: Uint8Array,
    headers: [string, string][],
    now: Date,
  ): Promise<ReportedBounces | undefined> {
    // the fields read on arrival: checks only add trace fields on top, never a Content-Type
    if (!this.deps.reportedBounces || !isDeliveryReport(headers)) return undefined;
    const report = await readDeliveryReport(content).catch(() => undefined);
    return report && this.deps.reportedBounces(report, now);
  }

  private async authenticate(
    arrival: Extract<Arrival, { kind: "inbound" }>,
    content: Uint8Array,
    resolver: Resolver,
  ): Promise<{ content: Uint8Array; verdict: AuthVerdict & { quarantine: boolean } }> {
    const { directory, hostname, dmarcPolicy } = this.deps;
    // Mail we forward carries our ARC seal, made with the key of the domain it was sent to.
    const forwarded = arrival.recipients.find((r) => r.target.kind === "forward");
    const seal = forwarded && (await directory.signingKey(domainOf(forwarded.address)));
    const outcome = await checkInbound(content, {
      ip: arrival.client.ip,
      helo: arrival.client.helo,
      mailFrom: arrival.mailFrom,
      hostname,
      resolver,
      verdicts: this.verdicts,
      seal,
    });
    this.deps.onAuthChecked?.(outcome.how);
    if (dmarcPolicy === "enforce") {
      if (outcome.dmarcAction === "reject") {
        throw new MessageRejected({
          reason: "dmarc-reject",
          domain: outcome.verdict.dmarc.domain ?? "the From domain",
        });
      }
      if (outcome.verdict.dmarc.result === "temperror")
        throw new MessageRejected({ reason: "dmarc-unresolved" });
    }
    return {
      content: Buffer.concat([Buffer.from(outcome.headers, "latin1"), content]),
      verdict: { ...outcome.verdict, quarantine: outcome.dmarcAction === "quarantine" },
    };
  }
}

/**
 * What an MSA does to a submission (RFC 6409 8): From and Sender the submitter may use, the Date
 * and Message-ID it lacks, and our DKIM signatures when the From domain is ours.
 */
export async function prepareSubmission(
  directory: Directory,
  content: Uint8Array,
  maySendAs: string[],
  hostname: string,
  now: Date,
): Promise<Uint8Array> {
  const fixed = fixUpSubmission(content, maySendAs, hostname, now);
  if (!fixed.ok) {
    throw new MessageRejected(
      fixed.problem === "from-not-owned"
        ? { reason: "from-not-owned", address: fixed.address }
        : { reason: fixed.problem },
    );
  }
  return signIfLocal(directory, fixed.content, now);
}
