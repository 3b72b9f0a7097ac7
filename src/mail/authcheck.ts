// Inbound message authentication: SPF, DKIM, DMARC and ARC through mailauth, the headers that
// record them, and what the DMARC policy asks of us.

import { createHash } from "node:crypto";
import type { DNSResolver } from "mailauth";
import { authenticate } from "mailauth";
import { bufferView } from "../bytes.ts";
import { TtlCache } from "../dns/cache.ts";
import { mailauthResolver, type Resolver } from "../dns/resolver.ts";
import { splitFields } from "./headers.ts";

export interface AuthVerdict {
  spf: string;
  dkim: { domain: string; selector: string; result: string }[];
  dmarc: { result: string; policy: string | null; domain: string | null };
  arc: string;
}

export type DmarcAction = "accept" | "quarantine" | "reject";

export interface AuthOutcome {
  /** Received-SPF and Authentication-Results, to go on top of the message. */
  headers: string;
  verdict: AuthVerdict;
  /** What the sender's DMARC policy asks for this message (before our own policy setting). */
  dmarcAction: DmarcAction;
}

export interface AuthContext {
  ip: string;
  helo: string;
  mailFrom: string;
  /** Our authserv-id: POSTERN_HOSTNAME. */
  hostname: string;
  resolver: Resolver;
  /** Verdicts on unsigned mail to reuse; see VerdictCache. */
  verdicts?: VerdictCache;
  /** ARC-seal with this key (for mail we forward): the seal records our verdicts for the next hop. */
  seal?: { domain: string; selector: string; privateKey: string };
}

// mailauth's result objects are loosely typed; these are the fields we read.
interface StatusRow {
  status?: { result?: string };
  signingDomain?: string;
  selector?: string;
}

/**
 * Outcomes of checks on unsigned mail, by what they were computed from. A message without
 * DKIM-Signature or ARC fields is judged on the envelope (client IP, HELO, MAIL FROM), its From
 * field(s) and DNS alone, so a sender that sends many such messages gets the same outcome, word
 * for word, each time: it is made once and reused until the first DNS answer it rests on expires.
 * Bulk mail from one envelope sender pays the checks once per TTL instead of once per message.
 */
export class VerdictCache {
  /** Most seconds a verdict is reused, even one made without any DNS answer. */
  static readonly MAX_SECONDS = 300;
  private readonly outcomes: TtlCache<AuthOutcome>;

  constructor(maxEntries = 10_000) {
    this.outcomes = new TtlCache(maxEntries);
  }

  get(key: string): AuthOutcome | undefined {
    return this.outcomes.get(key);
  }

  /** Keeps `outcome` until `expires` (performance.now()); an answer already expired keeps nothing. */
  set(key: string, outcome: AuthOutcome, expires: number): void {
    const seconds = Math.min((expires - performance.now()) / 1000, VerdictCache.MAX_SECONDS);
    this.outcomes.set(key, outcome, seconds);
  }

  get size(): number {
    return this.outcomes.size;
  }
}

/** How an outcome came about: signed mail verified, unsigned mail checked, or a kept verdict reused. */
export type AuthCheckKind = "verified" | "checked" | "reused";

export async function checkInbound(
  message: Uint8Array,
  ctx: AuthContext,
): Promise<AuthOutcome & { how: AuthCheckKind }> {
  const section = headerSection(message);
  // The fields as mailauth itself reads them: another reader could see a From, or a signature,
  // that mailauth does not (a fold before the colon, a stray control byte), and the key would
  // then not say what the outcome was made from.
  const fields = splitFields(section);
  if (ctx.seal || fields.some(({ key }) => key === "dkim-signature" || key?.startsWith("arc-"))) {
    return { ...(await evaluate(message, ctx, mailauthResolver(ctx.resolver))), how: "verified" };
  }
  const key = verdictKey(ctx, fields);
  const known = ctx.verdicts?.get(key);
  if (known) return { ...known, how: "reused" };
  // Answers that failed for now (timeouts, SERVFAIL) expire at once, so their outcome is not kept.
  let expires = Number.POSITIVE_INFINITY;
  const observed = mailauthResolver(ctx.resolver, (e) => {
    expires = Math.min(expires, e);
  });
  const outcome = await evaluate(section, ctx, observed);
  ctx.verdicts?.set(key, outcome, expires);
  return { ...outcome, how: "checked" };
}

/**
 * Everything mailauth reads from an unsigned message and its envelope (DMARC reads the From
 * fields, byte for byte), hashed: a From can be long, and entries stay small.
 */
function verdictKey(ctx: AuthContext, fields: { key: string | null; line: Buffer }[]): string {
  const from = fields.filter((f) => f.key === "from").map((f) => f.line.toString("latin1"));
  return createHash("sha256")
    .update(JSON.stringify([ctx.ip, ctx.helo, ctx.mailFrom, from]))
    .digest("base64");
}

async function evaluate(message: Uint8Array, ctx: AuthContext, resolver: DNSResolver): Promise<AuthOutcome> {
  const res = await authenticate(bufferView(message), {
    ip: ctx.ip,
    helo: ctx.helo,
    sender: ctx.mailFrom,
    mta: ctx.hostname,
    resolver,
    disableBimi: true,
    ...(ctx.seal
      ? {
          seal: {
            signingDomain: ctx.seal.domain,
            selector: ctx.seal.selector,
            privateKey: ctx.seal.privateKey,
          },
        }
      : {}),
  });
  const dmarc = res.dmarc as (StatusRow & { policy?: string; domain?: string }) | false;
  const dmarcResult = dmarc ? (dmarc.status?.result ?? "none") : "none";
  const policy = dmarc ? (dmarc.policy ?? null) : null;
  const verdict: AuthVerdict = {
    spf: (res.spf ? (res.spf as StatusRow).status?.result : undefined) ?? "none",
    dkim: ((res.dkim?.results ?? []) as StatusRow[]).map((r) => ({
      domain: r.signingDomain ?? "",
      selector: r.selector ?? "",
      result: r.status?.result ?? "none",
    })),
    dmarc: { result: dmarcResult, policy, domain: dmarc ? (dmarc.domain ?? null) : null },
    arc: (res.arc as StatusRow | undefined)?.status?.result ?? "none",
  };
  const dmarcAction: DmarcAction =
    dmarcResult !== "fail"
      ? "accept"
      : policy === "reject"
        ? "reject"
        : policy === "quarantine"
          ? "quarantine"
          : "accept";
  return { headers: res.headers, verdict, dmarcAction };
}

/**
 * The header section and the empty line that ends it. Only DKIM and ARC signatures (to verify)
 * and an ARC seal (to make) read the body; SPF and DMARC read the envelope and the headers.
 * mailauth parses the whole body byte by byte in any case (measured: most of the checks' cost for
 * a 10 KiB message), so unsigned mail is checked on its header section alone, with the same
 * verdicts. Postern's messages end their lines in CRLF only (bare LF and CR are refused), so the
 * first empty line is where mailauth ends the header section too.
 */
function headerSection(message: Uint8Array): Uint8Array {
  const end = bufferView(message).indexOf("\r\n\r\n");
  return end < 0 ? message : message.subarray(0, end + 4);
}

/**
 * Removes Authentication-Results fields that claim our authserv-id (RFC 8601 §5): only we may
 * speak for this host, and a sender could otherwise forge a "pass" from us.
 */
export function stripForgedAuthResults(message: Uint8Array, authservId: string): Uint8Array {
  const section = bufferView(headerSection(message));
  // the common case, no such field, without splitting anything
  if (!/authentication-results/i.test(section.toString("latin1"))) return message;
  // read as mailauth reads it (a fold before the colon still makes the field), and as a mail
  // reader could, so that no spelling of the field survives
  const fields = splitFields(section);
  const ours = sameAuthservId(authservId);
  const kept = fields.filter(({ key, line }) => {
    if (key !== "authentication-results") return true;
    const text = line.toString("latin1");
    return !ours(readAuthservId(text.slice(text.indexOf(":") + 1)));
  });
  if (kept.length === fields.length) return message;
  const crlf = Buffer.from("\r\n");
  return Buffer.concat([...kept.flatMap((f) => [f.line, crlf]), crlf, message.subarray(section.length)]);
}

/** authserv-ids compare case-insensitively; a trailing dot names the same host. */
function sameAuthservId(ours: string): (id: string | undefined) => boolean {
  const norm = (id: string) => id.toLowerCase().replace(/\.$/, "");
  const want = norm(ours);
  return (id) => id !== undefined && norm(id) === want;
}

/**
 * The authserv-id of an Authentication-Results value (RFC 8601 2.2): after CFWS (folding
 * white space and comments, which nest and may hold quoted-pairs), a token or a quoted-string
 * (RFC 2045 `value`). Read the way a mail reader would, so a forgery cannot hide our name from
 * us behind a quote or a nested comment. undefined when there is no value to read.
 */
export function readAuthservId(value: string): string | undefined {
  const start = skipCfws(value, 0);
  if (value[start] === '"') return readQuoted(value, start);
  // RFC 2045 token: printable ASCII but tspecials (and octets beyond ASCII, for UTF-8 names)
  const m = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~\u0080-\uffff]+/.exec(value.slice(start));
  return m?.[0];
}

/** Index of the first character after white space and (nested) comments from `i`. */
function skipCfws(text: string, i: number): number {
  let depth = 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (depth > 0 && c === "\\") i++;
    else if (c === "(") depth++;
    else if (c === ")" && depth > 0) depth--;
    else if (depth === 0 && !/\s/.test(c!)) return i;
  }
  return i;
}

/** The content of the quoted-string opening at `i`, quoted-pairs undone. */
function readQuoted(text: string, i: number): string {
  let out = "";
  for (let j = i + 1; j < text.length; j++) {
    const c = text[j]!;
    if (c === '"') break;
    if (c === "\\") out += text[++j] ?? "";
    else if (c !== "\r" && c !== "\n") out += c;
  }
  return out;
}
