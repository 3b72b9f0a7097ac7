// SMTP replies with their enhanced status codes (RFC 3463), named for where they are used.

export interface Reply {
  code: number;
  /** Enhanced status code, e.g. "2.1.0". */
  status: string;
  lines: string[];
}

export function reply(code: number, status: string, ...lines: string[]): Reply {
  return { code, status, lines: lines.length ? lines : [""] };
}

/** Wire form: every line carries the code and the enhanced status (RFC 2034 §3). */
export function formatReply(r: Reply): string {
  const last = r.lines.length - 1;
  const status = r.status ? `${r.status} ` : "";
  return `${r.lines.map((line, i) => `${r.code}${i === last ? " " : "-"}${status}${line}`.trimEnd()).join("\r\n")}\r\n`;
}

/** The greeting and EHLO's first line carry no enhanced code (RFC 2034 leaves them out). */
export function formatPlain(code: number, lines: string[]): string {
  const last = lines.length - 1;
  return `${lines.map((line, i) => `${code}${i === last ? " " : "-"}${line}`).join("\r\n")}\r\n`;
}

export const isPositive = (r: Reply) => r.code < 400;
export const isTransient = (r: Reply) => r.code >= 400 && r.code < 500;

export const R = {
  ok: (text = "Ok") => reply(250, "2.0.0", text),
  senderOk: () => reply(250, "2.1.0", "Ok"),
  recipientOk: () => reply(250, "2.1.5", "Ok"),
  queued: (id: string) => reply(250, "2.0.0", `Ok: queued as ${id}`),
  bye: () => reply(221, "2.0.0", "Bye"),
  startData: () => ({ code: 354, status: "", lines: ["End data with <CR><LF>.<CR><LF>"] }) satisfies Reply,
  readyTls: () => reply(220, "2.0.0", "Ready to start TLS"),
  authOk: () => reply(235, "2.7.0", "Authentication successful"),
  vrfy: () => reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"),
  help: () => reply(214, "2.0.0", "See RFC 5321"),

  badSequence: (why: string) => reply(503, "5.5.1", why),
  unknownCommand: () => reply(500, "5.5.2", "Error: command not recognized"),
  badSyntax: (why: string) => reply(501, "5.5.4", why),
  badParameter: (why: string) => reply(555, "5.5.4", why),
  lineTooLong: () => reply(500, "5.5.6", "Error: line too long"),
  textLineTooLong: () => reply(500, "5.5.6", "Error: message has a line longer than 998 octets"),
  bareLineEnd: (which: string) =>
    reply(550, "5.5.0", `Error: message contains a bare ${which}; lines must end with CRLF (RFC 5321 2.3.8)`),
  tooManyRecipients: () => reply(452, "4.5.3", "Error: too many recipients"),
  tooBig: () => reply(552, "5.3.4", "Error: message exceeds fixed maximum message size"),
  unknownUser: () => reply(550, "5.1.1", "Error: mailbox unavailable: no such user here"),
  /** The inner server of a relay route refused the recipient (a callout): its code and words. */
  refusedInside: (code: number, status: string | undefined, text: string) =>
    reply(
      code >= 500 && code <= 559 ? code : 550,
      status && /^5\.\d{1,3}\.\d{1,3}$/.test(status) ? status : "5.1.1",
      `Error: recipient refused by the inner mail server: ${text.replace(/[^\x20-\x7e]/g, "?").slice(0, 200)}`,
    ),
  /** `why`: suppressedText, the same words the `suppressed` event carries. */
  suppressed: (why: string) => reply(550, "5.7.1", `Error: ${why}`),
  relayDenied: () => reply(554, "5.7.1", "Error: relay access denied"),
  authRequired: () => reply(530, "5.7.0", "Error: authentication required"),
  tlsRequired: () => reply(530, "5.7.0", "Error: must issue a STARTTLS command first"),
  senderNotOwned: (addr: string) =>
    reply(553, "5.7.1", `Error: sender <${addr}> not owned by authenticated user`),
  authFailed: () => reply(535, "5.7.8", "Error: authentication credentials invalid"),
  authCancelled: () => reply(501, "5.7.0", "Error: authentication cancelled"),
  authMechanism: () => reply(504, "5.5.4", "Error: unrecognized authentication type"),
  alreadyAuthenticated: () => reply(503, "5.5.1", "Error: already authenticated"),
  tooManyHops: () => reply(554, "5.4.6", "Error: too many hops (mail loop?)"),
  manyFromHeaders: () => reply(550, "5.6.0", "Error: message has more than one From header (RFC 5322 3.6)"),
  noFromHeader: () => reply(550, "5.6.0", "Error: message has no From header (RFC 5322 3.6)"),
  senderDomainUnknown: () => reply(550, "5.1.8", "Error: sender address rejected: domain not found"),
  senderDomainNullMx: () =>
    reply(550, "5.7.27", "Error: sender address rejected: domain accepts no mail (null MX)"),
  senderDomainUnresolved: () =>
    reply(451, "4.1.8", "Error: sender address rejected: domain lookup failed, try again"),
  recipientDomainUnknown: () =>
    reply(550, "5.1.2", "Error: recipient address rejected: domain has no mail server"),
  recipientDomainUnresolved: () =>
    reply(450, "4.1.2", "Error: recipient address rejected: domain lookup failed, try again"),
  dmarcReject: (domain: string) =>
    reply(550, "5.7.1", `Error: message rejected by the DMARC policy of ${domain} (p=reject)`),
  dmarcUnresolved: () =>
    reply(451, "4.4.3", "Error: DNS look-ups for the From domain's DMARC policy failed, try again later"),
  utf8Needed: () => reply(553, "5.6.7", "Error: non-ASCII address needs SMTPUTF8"),
  localError: () => reply(451, "4.3.0", "Error: queue file write error, try again later"),
  tryAgainLater: () => reply(451, "4.3.0", "Error: temporary local problem, try again later"),
  authUnavailable: () => reply(454, "4.7.0", "Error: temporary authentication failure, try again later"),
  dnsblListed: (ip: string, zone: string) => reply(554, "5.7.1", `Error: client ${ip} is listed by ${zone}`),
  sendQuotaReached: (limit: number, retryAt: Date) =>
    reply(
      451,
      "4.7.1",
      `Error: send quota of ${limit} recipients per hour reached; try again after ${retryAt.toISOString().slice(11, 16)} UTC`,
    ),
  inboundRateLimited: () =>
    reply(451, "4.7.1", "Error: too many messages from your address; try again in a minute"),
  authLockedOut: () =>
    reply(454, "4.7.0", "Error: too many failed logins from your address; try again in 15 minutes"),
  internalError: () => reply(421, "4.3.0", "Error: internal error, closing connection"),
  tooManyErrors: () => reply(421, "4.7.0", "Error: too many errors, closing connection"),
  tooManyAuthFailures: () =>
    reply(421, "4.7.0", "Error: too many authentication failures, closing connection"),
  timeout: () => reply(421, "4.4.2", "Error: timeout exceeded, closing connection"),
  tooManyConnections: () => reply(421, "4.7.0", "Error: too many connections, try again later"),
  tooManyFromYou: () => reply(421, "4.7.0", "Error: too many connections from your address"),
  shuttingDown: () => reply(421, "4.3.2", "Service shutting down, closing connection"),
} as const;
