// What the outbound client must know about a message before it sends it, and the MAIL / RCPT
// command lines it sends. Pure.
import { ATOM } from "./command.ts";

const CR = 13;
const LF = 10;
const NON_ASCII = /[^\p{ASCII}]/u;
const XTEXT = /^([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$/;
/** RFC 5321 esmtp-param: a keyword, and a value of printable ASCII but "=" (no space, no control). */
const ESMTP_PARAM = /^[A-Za-z0-9][A-Za-z0-9-]*(=[\x21-\x3c\x3e-\x7e]+)?$/;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** True when any octet has the high bit set (the body then needs 8BITMIME to be sent as is). */
export function has8bit(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i]! > 0x7f) return true;
  return false;
}

/**
 * The header section: everything before the first empty line (a line end of any kind, CRLF,
 * bare LF or bare CR, right after another). The whole message when there is no empty line.
 */
export function headerSection(data: Uint8Array): Uint8Array {
  let lineStart = true;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === CR || b === LF) {
      if (lineStart) return data.subarray(0, i);
      if (b === CR && data[i + 1] === LF) i++;
      lineStart = true;
    } else {
      lineStart = false;
    }
  }
  return data;
}

/**
 * The message needs SMTPUTF8 (RFC 6531) when an envelope address is not ASCII, or its header
 * section holds non-ASCII text in UTF-8. Header octets that are not valid UTF-8 (old 8-bit
 * charsets sent raw) are not internationalised text: SMTPUTF8 would not make them right, and
 * they do not count here.
 */
export function needsSmtputf8(mailFrom: string, recipients: readonly string[], data: Uint8Array): boolean {
  if (NON_ASCII.test(mailFrom) || recipients.some((r) => NON_ASCII.test(r))) return true;
  const headers = headerSection(data);
  if (!has8bit(headers)) return false;
  try {
    strictUtf8.decode(headers);
    return true;
  } catch {
    return false;
  }
}

/** An address we may put between angle brackets: no control characters (no command injection). */
export function isSendableAddress(address: string): boolean {
  for (let i = 0; i < address.length; i++) {
    const c = address.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return false;
  }
  return true;
}

/** xtext (RFC 3461 4): "+", "=", controls, space and non-ASCII as +XX. */
export function encodeXtext(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out +=
      byte < 0x21 || byte > 0x7e || byte === 0x2b || byte === 0x3d
        ? `+${byte.toString(16).toUpperCase().padStart(2, "0")}`
        : String.fromCharCode(byte);
  }
  return out;
}

/** A value kept as received (already xtext) passes as it is; anything else is encoded. */
export function asXtext(value: string): string {
  return XTEXT.test(value) ? value : encodeXtext(value);
}

/**
 * ORCPT is "addr-type;xtext"; without a type, rfc822 is meant. A type that is not an atom (a
 * row written before the server checked it) is not passed on: undefined.
 */
export function orcptParam(orcpt: string): string | undefined {
  const semi = orcpt.indexOf(";");
  if (semi <= 0) return `rfc822;${asXtext(orcpt)}`;
  const type = orcpt.slice(0, semi);
  return ATOM.test(type) ? `${type};${asXtext(orcpt.slice(semi + 1))}` : undefined;
}

/**
 * The command line with its parameters. A parameter that is not a well-formed esmtp-param is
 * left out: nothing we relay may put a CR, LF or space inside the line the next hop reads.
 */
function commandLine(head: string, params: string[]): string {
  const safe = params.filter((p) => ESMTP_PARAM.test(p));
  return `${head}${safe.map((p) => ` ${p}`).join("")}\r\n`;
}

/** NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1); undefined when unusable. */
export function notifyParam(notify: string): string | undefined {
  const items = notify
    .toUpperCase()
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const valid = ["NEVER", "SUCCESS", "FAILURE", "DELAY"];
  if (items.length === 0 || !items.every((i) => valid.includes(i))) return undefined;
  if (items.includes("NEVER") && items.length > 1) return undefined;
  return [...new Set(items)].join(",");
}

export interface MailOptions {
  size: number | undefined;
  eightBitMime: boolean;
  smtputf8: boolean;
  dsn: { ret?: "FULL" | "HDRS"; envid?: string } | undefined;
}

export function mailCommand(from: string, o: MailOptions): string {
  const params: string[] = [];
  if (o.size !== undefined) params.push(`SIZE=${o.size}`);
  if (o.eightBitMime) params.push("BODY=8BITMIME");
  if (o.smtputf8) params.push("SMTPUTF8");
  if (o.dsn?.ret) params.push(`RET=${o.dsn.ret}`);
  if (o.dsn?.envid) params.push(`ENVID=${asXtext(o.dsn.envid)}`);
  return commandLine(`MAIL FROM:<${from}>`, params);
}

export function rcptCommand(to: string, dsn: { notify?: string; orcpt?: string } | undefined): string {
  const params: string[] = [];
  const notify = dsn?.notify ? notifyParam(dsn.notify) : undefined;
  if (notify) params.push(`NOTIFY=${notify}`);
  const orcpt = dsn?.orcpt ? orcptParam(dsn.orcpt) : undefined;
  if (orcpt) params.push(`ORCPT=${orcpt}`);
  return commandLine(`RCPT TO:<${to}>`, params);
}
