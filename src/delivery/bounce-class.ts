// The class of a delivery outcome, for events and the suppression list: `hard` (the address does
// not exist), `soft` (try later: full, greylisted, any 4xx), `block` (reputation or policy),
// `rate-limit` (slow down), `config` (our side: DNS, TLS, a private destination), `unknown`.
// Pure; the rules are data (bounce-rules.ts), so a new case is a line and a test, not code.
import { BOUNCE_RULES } from "./bounce-rules.ts";

export const BOUNCE_CLASSES = ["hard", "soft", "block", "rate-limit", "config", "unknown"] as const;
export type BounceClass = (typeof BOUNCE_CLASSES)[number];

export interface ClassifiedOutcome {
  /** "remote": a server's reply; "local": a failure of ours or of reaching anyone. */
  from: "remote" | "local";
  /** The reply code (for a local failure: the one we made up, or 0). */
  code: number;
  /** The enhanced status (RFC 3463), when known. */
  enhanced: string | undefined;
  text: string;
}

interface Rule {
  class: BounceClass;
  from?: "remote" | "local";
  code?: RegExp;
  enhanced?: RegExp;
  text?: RegExp;
}

/** Compiled once at start: a bad pattern is a bug the first test finds, not a run-time error. */
const RULES: Rule[] = BOUNCE_RULES.map((r) => ({
  class: r.class,
  from: r.from,
  code: r.code === undefined ? undefined : new RegExp(r.code),
  enhanced: r.enhanced === undefined ? undefined : new RegExp(r.enhanced),
  text: r.text === undefined ? undefined : new RegExp(r.text, "i"),
}));

export function classifyOutcome(o: ClassifiedOutcome): BounceClass {
  for (const rule of RULES) {
    if (rule.from && rule.from !== o.from) continue;
    if (rule.code && !rule.code.test(String(o.code))) continue;
    if (rule.enhanced && !(o.enhanced && rule.enhanced.test(o.enhanced))) continue;
    if (rule.text && !rule.text.test(o.text)) continue;
    return rule.class;
  }
  return "unknown";
}

/** "550 5.1.1 text" (as attempts record replies) read apart; a local failure has no code. */
export function readReply(reply: string): { code: number; enhanced: string | undefined; text: string } {
  const m = /^([2-5]\d\d)(?:[ -]([245]\.\d{1,3}\.\d{1,3}))?\s*(.*)$/s.exec(reply);
  if (!m) return { code: 0, enhanced: undefined, text: reply };
  return { code: Number(m[1]), enhanced: m[2], text: m[3]! };
}
