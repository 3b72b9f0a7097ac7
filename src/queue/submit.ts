// Mail injected by the operator (`POST /api/send`, `postern send`): checked and treated as a
// submission would be, then queued.

import type { ApiKey } from "../auth/keys.ts";
import { keyRights } from "../auth/senders.ts";
import type { Router } from "../delivery/route.ts";
import type { Directory } from "../domains/directory.ts";
import { addressProblem, domainOf, normalizeAddress } from "../mail/address.ts";
import { injectedReceivedHeader } from "../mail/received.ts";
import { newMessageId } from "./ids.ts";
import {
  type ArrivingRecipient,
  type InjectedVia,
  type Intake,
  MessageRejected,
  type Refusal,
} from "./intake.ts";
import type { QuotaTake, SendQuota } from "./quotas.ts";

export interface SubmitDeps {
  directory: Directory;
  router: Router;
  intake: Intake;
  hostname: string;
  /** POSTERN_MAX_MESSAGE_BYTES: the same cap as SMTP's. */
  maxMessageBytes: number;
  /** POSTERN_SEND_LIMIT_PER_HOUR, for keys without a limit of their own. */
  sendLimitPerHour?: number;
  /** Counts recipients against a key's send quota (quotas.ts); without it, no quota is kept. */
  takeQuota?(quota: SendQuota, n: number): Promise<QuotaTake>;
}

/**
 * A refused injection, naming the field at fault (for the HTTP answer or a one-line CLI error).
 * `status` is 413 for a message over the size limit, 400 otherwise.
 */
export class SubmitError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
    readonly status: 400 | 403 | 413 | 422 | 429 = 400,
    /** For a 429: when the quota opens again. */
    readonly retryAt?: Date,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** RFC 5322 2.1.1: a line is at most 998 octets, its CRLF not counted. */
const MAX_LINE_OCTETS = 998;
const CR = 13;
const LF = 10;

/**
 * The limits SMTP enforces, for mail that did not come by SMTP: the size cap, CRLF line ends
 * only (a bare CR or LF is read differently by each next hop: the smuggling class of bugs), and
 * the line length. Throws a SubmitError naming `field`, the line and the limit.
 */
export function checkInjectedContent(raw: Uint8Array, maxBytes: number, field: string): void {
  if (raw.length > maxBytes) {
    throw new SubmitError(
      field,
      `the message is ${raw.length} octets; the limit is ${maxBytes} (POSTERN_MAX_MESSAGE_BYTES)`,
      413,
    );
  }
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (b === CR && raw[i + 1] !== LF) throw new SubmitError(field, `bare CR (without LF) in line ${line}`);
    if (b !== LF) continue;
    if (raw[i - 1] !== CR) throw new SubmitError(field, `bare LF (without CR) in line ${line}`);
    lineTooLong(i - 1 - lineStart, line, field);
    line++;
    lineStart = i + 1;
  }
  lineTooLong(raw.length - lineStart, line, field);
}

function lineTooLong(octets: number, line: number, field: string): void {
  if (octets > MAX_LINE_OCTETS) {
    throw new SubmitError(
      field,
      `line ${line} is ${octets} octets long; the limit is ${MAX_LINE_OCTETS} (RFC 5322 2.1.1)`,
    );
  }
}

export interface Injection {
  from: string;
  to: string[];
  raw: Uint8Array;
  /** Who injected it, for the Received header and the message row. */
  via: InjectedVia;
  /** The application key it came with (/api/send): it may send from its domains only. */
  key?: ApiKey | undefined;
  /** What a refusal of the content names: "raw" (the default) or "message" for composed mail. */
  field?: string;
}

/** The queued message, and the recipients left out because the sending domain suppresses them. */
export interface Submitted {
  id: string;
  suppressed: string[];
}

export async function submitMessage(deps: SubmitDeps, mail: Injection): Promise<Submitted> {
  checkInjectedContent(mail.raw, deps.maxMessageBytes, mail.field ?? "raw");
  const from = normalizeAddress(mail.from);
  const fromProblem = addressProblem(from);
  if (fromProblem) throw new SubmitError("from", fromProblem);
  if (mail.key && !mail.key.domains.includes(domainOf(from)))
    throw new SubmitError("from", `${domainOf(from)} is not a domain of key ${mail.key.name}`, 403);
  // Like a user's `*@domain` right: any sender of a local domain, none outside them.
  if (!(await deps.directory.isLocalDomain(domainOf(from)))) {
    throw new SubmitError("from", `${domainOf(from)} is not a local domain`);
  }
  if (mail.to.length === 0) throw new SubmitError("to", "at least one recipient is needed");
  const recipients: ArrivingRecipient[] = [];
  const suppressed: string[] = [];
  for (const [i, raw] of mail.to.entries()) {
    const address = normalizeAddress(raw);
    const problem = addressProblem(address);
    if (problem) throw new SubmitError(`to[${i}]`, problem);
    const routing = await deps.router.route(address, {
      mailFrom: from,
      mayRelay: true,
      checkDomain: false,
      verifyInside: false,
      suppressible: true,
    });
    if (!routing.ok && routing.refusal === "suppressed") {
      suppressed.push(address);
      continue;
    }
    if (!routing.ok) {
      throw new SubmitError(
        `to[${i}]`,
        routing.refusal === "no-such-user"
          ? `${address}: no such local user`
          : `${address}: ${routing.refusal}`,
      );
    }
    recipients.push({ address, target: routing.target });
  }
  if (recipients.length === 0) {
    throw new SubmitError(
      "to",
      `every recipient is suppressed for ${domainOf(from)}: ${suppressed.join(", ")}`,
      422,
    );
  }
  const rights = mail.key && keyRights(mail.key, deps.sendLimitPerHour ?? 0);
  const quota = rights?.quota;
  if (quota && deps.takeQuota) {
    const taken = await deps.takeQuota(quota, recipients.length);
    if (!taken.ok)
      throw new SubmitError(
        "to",
        `send quota of ${quota.limit} recipients per hour of key ${mail.key!.name} reached`,
        429,
        taken.retryAt,
      );
  }
  const id = newMessageId();
  const now = new Date();
  const received = injectedReceivedHeader({ hostname: deps.hostname, id, via: mail.via, date: now });
  try {
    await deps.intake.accept(
      {
        kind: "submission",
        id,
        mailFrom: from,
        recipients,
        content: Buffer.concat([Buffer.from(received), mail.raw]),
        submitter: mail.key?.name ?? mail.via,
        maySendAs: rights?.maySendAs ?? [`*@${domainOf(from)}`],
        door: { via: mail.via },
      },
      now,
    );
  } catch (err) {
    if (err instanceof MessageRejected)
      throw injectionError(err.refusal, from, mail.field ?? "raw", mail.key?.name);
    throw err;
  }
  return { id, suppressed };
}

function injectionError(refusal: Refusal, from: string, field: string, key: string | undefined): SubmitError {
  switch (refusal.reason) {
    case "no-from":
      return new SubmitError("from", "the message has no From header");
    case "many-from":
      return new SubmitError("from", "the message has more than one From header");
    case "from-not-owned":
      return key
        ? new SubmitError("from", `From ${refusal.address} is not in a domain of key ${key}`, 403)
        : new SubmitError("from", `From ${refusal.address} is not ${domainOf(from)}'s`);
    case "too-many-hops":
      return new SubmitError(field, "the message has too many Received fields (a mail loop?)");
    case "dmarc-reject":
    case "dmarc-unresolved":
      // Only inbound mail is judged by DMARC: a submission never gets here.
      return new SubmitError(field, `refused: ${refusal.reason}`);
  }
}
