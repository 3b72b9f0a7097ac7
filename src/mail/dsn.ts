// Delivery status notifications: the multipart/report of RFC 6522 holding a human part, the
// machine-readable message/delivery-status of RFC 3464 and the original (or its headers), with
// the NOTIFY / RET / ENVID / ORCPT rules of RFC 3461.
//
// The multipart is written by hand rather than through nodemailer: buildDsn has to be
// synchronous (it runs inside the delivery transaction), MimeNode.build() is not, and MimeNode
// would re-encode the message/rfc822 and message/delivery-status parts, which must go out as
// they are (RFC 2046 5.2.1 allows only 7bit/8bit/binary there). Only the quoted-printable
// encoder is borrowed from it.
import { randomBytes } from "node:crypto";
import { encode as qpEncode, wrap as qpWrap } from "nodemailer/lib/qp";
import { newMessageIdField } from "./message-id.ts";
import { rfc5322Date } from "./received.ts";

export type DsnAction = "failed" | "delayed" | "delivered" | "relayed" | "expanded";

export interface DsnRecipient {
  /** The address delivery was tried for: `bob@example.org`, or already typed `rfc822; bob@example.org`. */
  finalRecipient: string;
  /** The ORCPT parameter as given at RCPT (`rfc822;a+2Bb@x.test`, xtext); decoded into Original-Recipient. */
  originalRecipient?: string;
  action: DsnAction;
  /** RFC 3463 status: `5.1.1`, `4.4.1`, `2.0.0`. */
  status: string;
  /** Host name of the server that answered: `Remote-MTA: dns; host`. */
  remoteMta?: string;
  /** The remote reply, `550 5.1.1 no such user`: `Diagnostic-Code: smtp; 550 5.1.1 no such user`. */
  diagnosticCode?: string;
  lastAttemptDate?: Date;
  /** For `delayed`: when the queue gives up. */
  willRetryUntil?: Date;
}

export interface DsnInput {
  /** Our host name. */
  reportingMta: string;
  /** The original MAIL FROM: the DSN goes there. */
  sender: string;
  /** The message as stored. */
  originalMessage: Uint8Array;
  /** RET from MAIL FROM. */
  ret?: "FULL" | "HDRS";
  /**
   * The sender is known to have sent the message (authenticated, or its SPF passed). If not, a
   * failure returns the headers only: a forged sender must not be sent someone else's message.
   */
  senderVerified: boolean;
  /** ENVID from MAIL FROM, xtext as given. */
  envid?: string;
  arrivalDate: Date;
  queueId: string;
  /** One kind of event: one DSN per message per event. */
  recipients: DsnRecipient[];
  now: Date;
  /** The largest original returned whole; bigger ones come back as headers only. Default 1 MiB. */
  maxReturnBytes?: number;
}

export interface Dsn {
  /** A DSN is always sent from the null reverse-path (RFC 5321 4.5.5), so it can never bounce back. */
  mailFrom: "";
  to: string;
  raw: Uint8Array;
}

export const DEFAULT_MAX_RETURN_BYTES = 1024 * 1024;

const NOTIFY_KEYWORD: Record<DsnAction, string> = {
  failed: "FAILURE",
  delayed: "DELAY",
  delivered: "SUCCESS",
  // RFC 3461 6.2.2 / 6.2.7.2: relayed and expanded notices answer NOTIFY=SUCCESS.
  relayed: "SUCCESS",
  expanded: "SUCCESS",
};

/**
 * Whether a recipient's NOTIFY asks for a notice of this action (RFC 3461 4.1). Without NOTIFY
 * an MTA reports failures and, as Postfix and Exim do, delays, never successes; NEVER silences all.
 */
export function shouldNotify(notify: string | null | undefined, action: DsnAction): boolean {
  const listed = (notify ?? "")
    .split(",")
    .map((k) => k.trim().toUpperCase())
    .filter((k) => k !== "");
  if (listed.length === 0) return action === "failed" || action === "delayed";
  if (listed.includes("NEVER")) return false;
  return listed.includes(NOTIFY_KEYWORD[action]);
}

/**
 * A reverse-path no DSN may go to: the null sender `<>` (RFC 5321 4.5.5: never a notice about a
 * notice) and MAILER-DAEMON, which other systems use for their own bounces, so two mail systems
 * never bounce at each other forever.
 */
export function isNullSender(mailFrom: string): boolean {
  const address = bareAddress(mailFrom);
  if (address === "") return true;
  const at = address.lastIndexOf("@");
  const local = (at < 0 ? address : address.slice(0, at)).replace(/^"(.*)"$/s, "$1");
  return local.toLowerCase() === "mailer-daemon";
}

/** RFC 3461 4 xtext: `+XX` is the byte XX. Bytes are read as UTF-8 (RFC 6533 addresses). */
export function decodeXtext(value: string): string {
  const chunks: Buffer[] = [];
  let last = 0;
  for (const m of value.matchAll(/\+([0-9A-Fa-f]{2})/g)) {
    chunks.push(Buffer.from(value.slice(last, m.index), "utf8"), Buffer.of(Number.parseInt(m[1]!, 16)));
    last = m.index + m[0].length;
  }
  chunks.push(Buffer.from(value.slice(last), "utf8"));
  return Buffer.concat(chunks).toString("utf8");
}

const SUBJECTS: Record<DsnAction, string> = {
  failed: "Undelivered Mail Returned to Sender",
  delayed: "Delayed Mail (still being retried)",
  delivered: "Successful Mail Delivery Report",
  relayed: "Successful Mail Delivery Report",
  expanded: "Successful Mail Delivery Report",
};

const INTRO: Record<DsnAction, string> = {
  failed:
    "Your message could not be delivered to one or more recipients. The mail system gave up for the reasons below.",
  delayed:
    "Your message could not be delivered yet to the recipients below. The mail system keeps trying and will tell you if it gives up; you need not send it again.",
  delivered: "Your message was delivered to the recipients below.",
  relayed:
    "Your message was handed on to the mail systems of the recipients below. They send no delivery reports, so you may hear nothing more about it.",
  expanded:
    "Your message was delivered to the mailing lists or aliases below, which pass it on to their members. You may hear nothing more about it.",
};

type Returned =
  | { kind: "full"; content: Uint8Array }
  | {
      kind: "headers";
      content: Uint8Array;
      reason: "asked" | "not-failed" | "too-big" | "malformed" | "unverified-sender";
    };

/**
 * Builds the DSN for one event on one message. Throws on what is a caller's bug: a null or
 * MAILER-DAEMON sender (check isNullSender first), no recipients, mixed actions, a malformed status.
 */
export function buildDsn(input: DsnInput): Dsn {
  if (isNullSender(input.sender)) {
    throw new Error(
      `no DSN may go to the null sender or MAILER-DAEMON (sender ${JSON.stringify(input.sender)})`,
    );
  }
  const first = input.recipients[0];
  if (!first) throw new Error("a DSN needs at least one recipient");
  const action = first.action;
  for (const r of input.recipients) {
    if (r.action !== action) throw new Error(`one DSN per event: ${r.action} mixed with ${action}`);
    if (!/^[245]\.\d{1,3}\.\d{1,3}$/.test(r.status)) {
      throw new Error(`malformed status ${JSON.stringify(r.status)} for ${r.finalRecipient}`);
    }
  }
  const host = ascii(input.reportingMta);
  const to = bareAddress(input.sender);
  const returned = chooseReturned(input, action);
  const eightBit = hasEightBit(returned.content);

  const human = humanPart(input, action, returned);
  const report = deliveryStatus(input);
  const returnedHeaders =
    returned.kind === "full"
      ? ["Content-Description: Undelivered Message", "Content-Type: message/rfc822"]
      : ["Content-Description: Message Headers", "Content-Type: text/rfc822-headers"];
  if (eightBit) returnedHeaders.push("Content-Transfer-Encoding: 8bit");

  const parts: Buffer[] = [
    Buffer.from(`${human.headers.join("\r\n")}\r\n\r\n${human.body}`, "latin1"),
    Buffer.from(
      `Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n${report}`,
      "latin1",
    ),
    Buffer.concat([Buffer.from(`${returnedHeaders.join("\r\n")}\r\n\r\n`, "latin1"), returned.content]),
  ];
  const boundary = freshBoundary(parts);

  const head = [
    `From: "Mail Delivery System" <MAILER-DAEMON@${host}>`,
    // The address as given: an SMTPUTF8 sender keeps its UTF-8 (RFC 6532).
    `To: <${to.replace(/[\r\n]/g, "")}>`,
    `Subject: ${SUBJECTS[action]}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: ${newMessageIdField(host, input.now)}`,
    // RFC 3834 5: an automatic response, so auto-responders leave it alone.
    "Auto-Submitted: auto-replied",
    "MIME-Version: 1.0",
    "Content-Type: multipart/report; report-type=delivery-status;",
    `\tboundary="${boundary}"`,
  ];
  if (eightBit) head.push("Content-Transfer-Encoding: 8bit");

  const chunks: Buffer[] = [
    Buffer.from(`${head.join("\r\n")}\r\n\r\nThis is a MIME-encapsulated message.\r\n`, "utf8"),
  ];
  for (const part of parts) chunks.push(Buffer.from(`\r\n--${boundary}\r\n`, "latin1"), part);
  chunks.push(Buffer.from(`\r\n--${boundary}--\r\n`, "latin1"));
  return { mailFrom: "", to, raw: new Uint8Array(Buffer.concat(chunks)) };
}

/**
 * RFC 3461 4.3: RET=FULL (or no RET) returns the whole message on a failure; a notice that
 * reports no failure SHOULD carry only the headers; and we never send back more than the cap,
 * nor an original that could not travel as a message/rfc822 part unchanged, nor the content of
 * a message to a sender that may be forged (backscatter).
 */
function chooseReturned(input: DsnInput, action: DsnAction): Returned {
  const original = input.originalMessage;
  const headers = () => headerSection(original);
  if (action !== "failed") return { kind: "headers", content: headers(), reason: "not-failed" };
  if (input.ret === "HDRS") return { kind: "headers", content: headers(), reason: "asked" };
  if (!input.senderVerified) return { kind: "headers", content: headers(), reason: "unverified-sender" };
  if (original.length > (input.maxReturnBytes ?? DEFAULT_MAX_RETURN_BYTES)) {
    return { kind: "headers", content: headers(), reason: "too-big" };
  }
  if (!travelsAsIs(original)) return { kind: "headers", content: headers(), reason: "malformed" };
  return { kind: "full", content: original };
}

/** CRLF line ends only, no NUL, no line over 998 octets: what 7bit/8bit content must be (RFC 2045 2.7). */
function travelsAsIs(raw: Uint8Array): boolean {
  let lineStart = 0;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b === 0) return false;
    if (b === 13) {
      if (raw[i + 1] !== 10) return false;
      if (i - lineStart > 998) return false;
      i++;
      lineStart = i + 1;
    } else if (b === 10) {
      return false;
    }
  }
  return raw.length - lineStart <= 998;
}

/**
 * The header block of the original, CRLF-terminated, made safe to travel even when the
 * original was not: line ends normalized, NULs dropped, over-long lines folded.
 */
function headerSection(raw: Uint8Array): Uint8Array {
  const text = Buffer.from(raw)
    .toString("latin1")
    .replace(/\r\n|\r|\n/g, "\r\n");
  const blank = text.startsWith("\r\n") ? 0 : text.indexOf("\r\n\r\n");
  const head = (blank < 0 ? text : text.slice(0, blank)).replace(/\0/g, "").replace(/\r\n$/, "");
  if (head === "") return new Uint8Array();
  const lines: string[] = [];
  for (let line of head.split(/\r\n|\r|\n/)) {
    while (line.length > 998) {
      // Break before the last blank that keeps the line short, else anywhere; the rest continues.
      let cut = line.lastIndexOf(" ", 998);
      if (cut <= 0) cut = 998;
      lines.push(line.slice(0, cut));
      line = line[cut] === " " || line[cut] === "\t" ? line.slice(cut) : ` ${line.slice(cut)}`;
    }
    lines.push(line);
  }
  return Buffer.from(`${lines.join("\r\n")}\r\n`, "latin1");
}

function humanPart(
  input: DsnInput,
  action: DsnAction,
  returned: Returned,
): { headers: string[]; body: string } {
  const paragraphs = [`This is the mail system at host ${input.reportingMta}.`, INTRO[action]];
  const attached =
    returned.kind === "full"
      ? "Your message is attached below."
      : returned.reason === "too-big"
        ? `Your message was too large to return (${input.originalMessage.length} bytes); its headers are attached below.`
        : returned.reason === "malformed"
          ? "Your message could not be returned unchanged; its headers are attached below."
          : "The headers of your message are attached below.";
  paragraphs.push(attached);
  if (action === "failed") {
    paragraphs.push(
      `For further assistance, please send mail to postmaster@${input.reportingMta} and include this report.`,
    );
  }
  const lines: string[] = [];
  for (const p of paragraphs) lines.push(...wrap(p, 72), "");
  for (const r of input.recipients) {
    const address = bareAddress(r.finalRecipient.replace(/^[A-Za-z0-9-]+;\s*/, ""));
    const reason = r.diagnosticCode
      ? `${r.remoteMta ? `host ${r.remoteMta} said: ` : ""}${oneLine(r.diagnosticCode)}`
      : `${r.remoteMta ? `host ${r.remoteMta}: ` : ""}status ${r.status}`;
    const retry = r.willRetryUntil ? ` (will retry until ${rfc5322Date(r.willRetryUntil)})` : "";
    const entry = wrap(`<${oneLine(address)}>: ${reason}${retry}`, 72);
    lines.push(entry[0]!, ...entry.slice(1).map((l) => `    ${l}`), "");
  }
  const text = lines.join("\r\n");
  // Remote replies and SMTPUTF8 addresses may hold UTF-8: quoted-printable keeps this part 7bit.
  if (!/[^\x20-\x7e\r\n]/.test(text)) {
    return {
      headers: ["Content-Description: Notification", "Content-Type: text/plain; charset=us-ascii"],
      body: text,
    };
  }
  return {
    headers: [
      "Content-Description: Notification",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: quoted-printable",
    ],
    body: qpWrap(qpEncode(Buffer.from(text, "utf8")), 76),
  };
}

/** The message/delivery-status body (RFC 3464 2.2, 2.3), fields in the order of its grammar. */
function deliveryStatus(input: DsnInput): string {
  const perMessage: string[] = [];
  if (input.envid) perMessage.push(field("Original-Envelope-Id", ascii(decodeXtext(input.envid))));
  perMessage.push(field("Reporting-MTA", `dns; ${ascii(input.reportingMta)}`));
  perMessage.push(field("Arrival-Date", rfc5322Date(input.arrivalDate)));
  perMessage.push(field("X-Postern-Queue-ID", ascii(input.queueId)));
  const blocks = [perMessage.join("")];
  for (const r of input.recipients) {
    const f: string[] = [];
    if (r.originalRecipient) f.push(field("Original-Recipient", originalRecipient(r.originalRecipient)));
    f.push(field("Final-Recipient", finalRecipient(r.finalRecipient)));
    f.push(field("Action", r.action));
    f.push(field("Status", r.status));
    if (r.remoteMta) f.push(field("Remote-MTA", `dns; ${ascii(r.remoteMta)}`));
    if (r.diagnosticCode) {
      const code = ascii(r.diagnosticCode);
      // A reply is smtp-typed unless the caller typed it already (`X-Postern; ...`).
      f.push(field("Diagnostic-Code", /^[A-Za-z][A-Za-z0-9-]*;/.test(code) ? code : `smtp; ${code}`));
    }
    if (r.lastAttemptDate) f.push(field("Last-Attempt-Date", rfc5322Date(r.lastAttemptDate)));
    if (r.willRetryUntil) f.push(field("Will-Retry-Until", rfc5322Date(r.willRetryUntil)));
    blocks.push(f.join(""));
  }
  return blocks.join("\r\n");
}

/** `rfc822; bob@x` from a bare address, or a typed one kept (re-typed utf-8 when not ASCII). */
function finalRecipient(value: string): string {
  const typed = /^([A-Za-z0-9-]+);\s*(.*)$/s.exec(value);
  return typedAddress(typed ? typed[1]! : "rfc822", bareAddress(typed ? typed[2]! : value), "; ");
}

/** ORCPT `type;xtext` → `type;decoded` (RFC 3461 4.2), as given otherwise: no space after `;`, as Postfix. */
function originalRecipient(orcpt: string): string {
  const semi = orcpt.indexOf(";");
  if (semi < 0) return typedAddress("rfc822", decodeXtext(orcpt.trim()), ";");
  return typedAddress(orcpt.slice(0, semi).trim(), decodeXtext(orcpt.slice(semi + 1).trim()), ";");
}

/**
 * An address field must be ASCII in message/delivery-status; a non-ASCII (SMTPUTF8) address
 * goes as `utf-8;` with its non-ASCII characters written `\x{HEX}` (RFC 6533 3, utf-8-addr-xtext).
 */
function typedAddress(type: string, address: string, separator: string): string {
  const clean = address.replace(/\p{Cc}/gu, "");
  if (/^[\x20-\x7e]*$/.test(clean)) return `${ascii(type)}${separator}${clean}`;
  const escaped = [...clean]
    .map((c) => (c.codePointAt(0)! > 0x7e ? `\\x{${c.codePointAt(0)!.toString(16).toUpperCase()}}` : c))
    .join("");
  return `utf-8${separator}${escaped}`;
}

/** A field line, folded at blanks near 78 columns; a run of over 900 octets is broken anyway. */
function field(name: string, value: string): string {
  const words = value.split(" ").flatMap((w) => (w.length > 900 ? (w.match(/.{1,900}/gs) ?? [w]) : [w]));
  let out = "";
  let line = `${name}:`;
  let empty = true;
  for (const word of words) {
    if (!empty && line.length + 1 + word.length > 78) {
      out += `${line}\r\n`;
      line = "";
    }
    line += ` ${word}`;
    empty = false;
  }
  return `${out}${line}\r\n`;
}

/** Printable ASCII on one line: the machine fields allow nothing else (RFC 3464 2.1.2). */
function ascii(value: string): string {
  return oneLine(value).replace(/[^\x20-\x7e]/g, "?");
}

/** A remote reply may span lines (`550-...` / `550 ...`); a report holds it on one. */
function oneLine(value: string): string {
  return value
    .replace(/\s*(?:\r\n|\r|\n)\s*/g, " ")
    .replace(/\p{Cc}/gu, " ")
    .trim();
}

function bareAddress(value: string): string {
  return value
    .trim()
    .replace(/^<(.*)>$/s, "$1")
    .trim();
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const w of text.split(" ")) {
    for (const word of w.length > 900 ? (w.match(/.{1,900}/gs) ?? [w]) : [w]) {
      if (line !== "" && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else {
        line = line === "" ? word : `${line} ${word}`;
      }
    }
  }
  lines.push(line);
  return lines;
}

function hasEightBit(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b > 0x7f) return true;
  return false;
}

/** A boundary found in none of the parts (RFC 2046 5.1.1). */
function freshBoundary(parts: Buffer[]): string {
  for (;;) {
    const boundary = `=_postern-dsn-${randomBytes(12).toString("hex")}`;
    if (!parts.some((p) => p.includes(boundary, 0, "latin1"))) return boundary;
  }
}
