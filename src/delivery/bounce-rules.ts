// How a delivery outcome is classed: data, not code (issue 12). Rules in order, the first that
// matches wins; a rule matches when every field it has matches: `from` ("remote": a server's
// reply; "local": our own failure), `code` (the reply code, a regex), `enhanced` (the enhanced
// status, a regex), `text` (the reply text, a case-insensitive regex). A new case is a new line
// here and a case in test/unit/bounce-class.test.ts.

import type { BounceClass } from "./bounce-class.ts";

export interface BounceRule {
  class: BounceClass;
  from?: "remote" | "local";
  code?: string;
  enhanced?: string;
  text?: string;
  /** Why the rule is there. */
  why: string;
}

export const BOUNCE_RULES: readonly BounceRule[] = [
  {
    class: "config",
    text: "not sent \\(MTA-STS\\)$",
    why: "held back by a receiver's MTA-STS policy (ours to report; the MX host may have been reached)",
  },
  {
    class: "config",
    from: "local",
    enhanced: "^5\\.4\\.4$",
    why: "a destination we do not deliver to (private address)",
  },
  { class: "config", from: "local", enhanced: "^4\\.4\\.3$", why: "our DNS look-up failed" },
  {
    class: "config",
    from: "local",
    text: "^local error",
    why: "something of ours (a stored target, a courier)",
  },
  {
    class: "config",
    text: "TLS|STARTTLS|certificate",
    code: "^(4|5)",
    from: "local",
    why: "our TLS policy or a handshake",
  },
  {
    class: "rate-limit",
    enhanced: "^4\\.7\\.(28|650|0)$",
    text: "rate|too many|throttl|try again later|temporarily deferred",
    why: "the big providers' rate limits (Gmail 4.7.28, Microsoft 4.7.650)",
  },
  { class: "rate-limit", enhanced: "^4\\.7\\.(28|650)$", why: "named rate-limit codes, whatever the words" },
  {
    class: "rate-limit",
    code: "^4(21|50|51|52)$",
    text: "rate limit|too many (messages|connections|recipients)|throttl|slow down|exceeded.*(rate|limit)",
    why: "rate limits in words",
  },
  { class: "block", code: "^5", enhanced: "^5\\.7\\.", why: "security or policy (RFC 3463 5.7.x)" },
  {
    class: "block",
    code: "^5",
    text: "spam|blocked|block ?list|black ?list|spamhaus|reputation|policy|rejected for policy|denied",
    why: "reputation and policy in words",
  },
  {
    class: "hard",
    enhanced: "^5\\.1\\.(1|2|3|6|10)$",
    why: "no such user, domain or address; moved; null MX",
  },
  {
    class: "hard",
    code: "^55[0-3]$",
    text: "user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn't exist|invalid (recipient|mailbox|address)|mailbox unavailable|recipient address rejected|not found|address rejected|unrouteable|undeliverable address",
    why: "no such user in words",
  },
  { class: "soft", enhanced: "^[45]\\.2\\.2$", why: "mailbox full" },
  {
    class: "soft",
    text: "mailbox (is )?full|over quota|quota exceeded|insufficient storage",
    why: "mailbox full in words",
  },
  {
    class: "soft",
    text: "greylist|graylist|try again later|temporar",
    why: "greylisting and other temporary refusals",
  },
  { class: "soft", code: "^4", why: "any other temporary failure" },
  {
    class: "soft",
    from: "local",
    enhanced: "^4\\.",
    why: "no server reached yet (refused, unreachable, timed out)",
  },
  { class: "unknown", why: "a permanent failure that says nothing we recognise" },
];
