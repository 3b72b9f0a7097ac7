// Replies as our outbound client reads them: an incremental parser (bytes in, whole replies out)
// and the pieces of a reply a delivery decision needs. Pure: no state beyond the bytes not yet
// read as a reply, no I/O.
//
// A reply is one or more lines "NNN-text" ... "NNN text" (RFC 5321 4.2.1). The enhanced status
// code (RFC 2034, RFC 3463) starts the text of each line when the server uses them; it is taken
// from the first line and removed from every line's text.

/** A server reply as the client reports it. */
export interface Reply {
  code: number;
  /** Enhanced status code such as "5.1.1", when the server sent one. */
  enhanced: string | undefined;
  /** The text of all lines (enhanced codes removed), joined by " ". */
  text: string;
}

/** A reply with its lines kept apart (EHLO needs them one by one). */
export interface WireReply extends Reply {
  /** Each line's text after "NNN-" / "NNN ", enhanced code removed. */
  lines: string[];
}

/**
 * Longest reply line we read, CRLF included. RFC 5321 4.5.3.1.5 says 512; servers that go past
 * it exist, so we allow four times that (Postfix reads up to its line_length_limit, 2048) and
 * call anything longer a protocol error, so a peer that never sends a line end cannot make us
 * buffer without end.
 */
export const MAX_REPLY_LINE_OCTETS = 2048;
/** More lines than this in one reply is a server gone wrong (an EHLO reply has some 20). */
export const MAX_REPLY_LINES = 256;

export class ReplySyntaxError extends Error {}

const LINE = /^([2-5]\d\d)(?:([ -])(.*))?$/s;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)/;
const LF = 10;
const utf8 = new TextDecoder("utf-8");

/** Splits the enhanced code off a line's text when its class agrees with the reply code. */
export function splitEnhanced(code: number, text: string): { enhanced: string | undefined; rest: string } {
  const m = ENHANCED.exec(text);
  if (!m || Number(m[1]) !== Math.floor(code / 100)) return { enhanced: undefined, rest: text };
  return { enhanced: `${m[1]}.${Number(m[2])}.${Number(m[3])}`, rest: text.slice(m[0].length) };
}

/** Builds the reply from its raw line texts (as after "NNN-" / "NNN "). */
export function makeReply(code: number, rawLines: string[]): WireReply {
  const first = splitEnhanced(code, rawLines[0] ?? "");
  const lines = rawLines.map((line) => {
    if (first.enhanced === undefined) return line;
    const s = splitEnhanced(code, line);
    return s.enhanced === undefined ? line : s.rest;
  });
  return { code, enhanced: first.enhanced, text: lines.join(" ").trim(), lines };
}

/** A reply made up on our side (e.g. a message too big for the server), in the same shape. */
export function syntheticReply(code: number, enhanced: string, text: string): Reply {
  return { code, enhanced, text };
}

/** The reply without its separate lines, as stored with a delivery result. */
export function plainReply(r: Reply): Reply {
  return { code: r.code, enhanced: r.enhanced, text: r.text };
}

/** "550 5.1.1 No such user": for logs and DSN diagnostic codes. */
export function formatClientReply(r: Reply): string {
  return [String(r.code), r.enhanced, r.text].filter(Boolean).join(" ");
}

export const isPositiveReply = (r: Reply) => r.code >= 200 && r.code < 400;
export const isTransientReply = (r: Reply) => r.code >= 400 && r.code < 500;
export const isPermanentReply = (r: Reply) => r.code >= 500;

/**
 * Incremental reply reader: `push` bytes as they arrive (split anywhere), get the complete
 * replies. Throws ReplySyntaxError on a line that is not a reply line, a line too long, a
 * multiline reply whose lines disagree on the code, or too many lines.
 */
export class ReplyParser {
  private buffer: Uint8Array = new Uint8Array(0);
  private code = 0;
  private lines: string[] = [];

  /** Bytes received and not yet part of a complete reply. */
  get pending(): number {
    return this.buffer.length;
  }

  push(chunk: Uint8Array): WireReply[] {
    const out: WireReply[] = [];
    let buf = this.buffer.length === 0 ? chunk : concatBytes(this.buffer, chunk);
    let start = 0;
    for (;;) {
      const lf = buf.indexOf(LF, start);
      if (lf < 0) break;
      if (lf + 1 - start > MAX_REPLY_LINE_OCTETS) throw new ReplySyntaxError("reply line too long");
      let end = lf;
      if (end > start && buf[end - 1] === 13) end--;
      const reply = this.line(utf8.decode(buf.subarray(start, end)));
      if (reply) out.push(reply);
      start = lf + 1;
    }
    buf = buf.subarray(start);
    if (buf.length >= MAX_REPLY_LINE_OCTETS) throw new ReplySyntaxError("reply line too long");
    // Keep our own copy: the caller's buffer may be reused.
    this.buffer = buf.length === 0 ? new Uint8Array(0) : buf.slice();
    return out;
  }

  private line(text: string): WireReply | undefined {
    const m = LINE.exec(text);
    if (!m) throw new ReplySyntaxError(`not an SMTP reply line: ${JSON.stringify(text.slice(0, 80))}`);
    const code = Number(m[1]);
    if (this.lines.length > 0 && code !== this.code) {
      throw new ReplySyntaxError(`multiline reply changes its code from ${this.code} to ${code}`);
    }
    this.code = code;
    this.lines.push(m[3] ?? "");
    if (this.lines.length > MAX_REPLY_LINES) throw new ReplySyntaxError("reply has too many lines");
    if (m[2] === "-") return undefined;
    const reply = makeReply(code, this.lines);
    this.lines = [];
    return reply;
  }
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The extensions of an EHLO/LHLO reply: upper-case keyword -> its parameters ("" when none).
 * The first line is the server's greeting, not an extension. "AUTH=LOGIN PLAIN" (a form from
 * before RFC 4954) counts as AUTH when no plain AUTH line is there.
 */
export function parseExtensions(ehlo: WireReply): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of ehlo.lines.slice(1)) {
    const text = line.trim();
    if (!text) continue;
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:([ =])(.*))?$/.exec(text);
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    const params = (m[3] ?? "").trim();
    if (m[2] === "=") {
      if (keyword === "AUTH" && !out.has("AUTH")) out.set("AUTH", params);
      continue;
    }
    out.set(keyword, params);
  }
  return out;
}

/** The SIZE extension's limit in octets; undefined when none is given (or 0: no fixed limit). */
export function sizeLimit(extensions: Map<string, string>): number | undefined {
  const value = extensions.get("SIZE");
  if (value === undefined || !/^\d{1,15}$/.test(value)) return undefined;
  const n = Number(value);
  return n > 0 ? n : undefined;
}
