// Builds an RFC 5322 message from the fields of `POST /api/send` and the `send` CLI. nodemailer's
// MailComposer does the MIME work (multipart/alternative and /mixed, quoted-printable or base64,
// RFC 2047 encoded-words, RFC 2231 file names); this module decides what it may be given.
import { randomBytes } from "node:crypto";
import MailComposer from "nodemailer/lib/mail-composer";

export interface ComposeAttachment {
  filename: string;
  /** Guessed from the file name when absent. */
  contentType?: string;
  /** base64. */
  content: string;
}

export interface ComposeInput {
  from: string;
  to: string[];
  cc?: string[];
  subject: string;
  text?: string;
  html?: string;
  headers?: Record<string, string>;
  attachments?: ComposeAttachment[];
  /** Right-hand side of the Message-ID. */
  messageIdDomain: string;
  date: Date;
}

/** A field the caller may not set, or may not set that way; `field` names it for the 400 answer. */
export class ComposeError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "ComposeError";
  }
}

/**
 * Header fields composeMessage writes itself: a custom header would override or double them
 * (From, Date, Message-ID appear once: RFC 5322 3.6), or break the MIME structure (Content-*).
 */
const RESERVED = new Set(["from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version"]);

/** RFC 5322 2.2 field-name: printable ASCII but the colon. */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

export async function composeMessage(input: ComposeInput): Promise<Uint8Array> {
  noLineBreak("from", input.from);
  for (const [i, a] of input.to.entries()) noLineBreak(`to[${i}]`, a);
  for (const [i, a] of (input.cc ?? []).entries()) noLineBreak(`cc[${i}]`, a);
  noLineBreak("subject", input.subject);
  noLineBreak("messageIdDomain", input.messageIdDomain);
  const headers = Object.entries(input.headers ?? {});
  for (const [name, value] of headers) {
    if (!FIELD_NAME.test(name))
      throw new ComposeError(name, `header name ${JSON.stringify(name)} is not allowed`);
    const lower = name.toLowerCase();
    if (RESERVED.has(lower) || lower.startsWith("content-")) {
      throw new ComposeError(name, `header ${name} is set by the message itself, not as a custom header`);
    }
    noLineBreak(name, value);
  }
  const attachments = (input.attachments ?? []).map((a, i) => {
    noLineBreak(`attachments[${i}].filename`, a.filename);
    if (a.contentType !== undefined) noLineBreak(`attachments[${i}].contentType`, a.contentType);
    return {
      filename: a.filename,
      contentType: a.contentType,
      content: base64(`attachments[${i}].content`, a.content),
    };
  });

  const composer = new MailComposer({
    from: input.from,
    to: input.to,
    cc: input.cc && input.cc.length > 0 ? input.cc : undefined,
    subject: input.subject,
    // Line ends become CRLF here: a lone CR would otherwise reach the wire (and our own SMTP
    // listener refuses it, 550 5.5.0).
    text: input.text === undefined ? undefined : crlf(input.text),
    html: input.html === undefined ? undefined : crlf(input.html),
    attachments,
    messageId: `<${input.date.getTime().toString(36)}.${randomBytes(8).toString("hex")}@${input.messageIdDomain}>`,
    date: input.date,
    newline: "win",
    // Nothing here may read a file or fetch a URL on the caller's behalf.
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  const root = composer.compile();
  // Added after the standard fields so they follow From/To/Subject; non-ASCII is encoded.
  for (const [name, value] of headers) root.addHeader(name, value);
  const raw = new Uint8Array(await root.build());
  checkLineLengths(raw);
  return raw;
}

function noLineBreak(field: string, value: string): void {
  if (/[\r\n]/.test(value)) throw new ComposeError(field, `${field} holds a line break`);
}

function crlf(text: string): string {
  return text.replace(/\r\n|\r|\n/g, "\r\n");
}

function base64(field: string, value: string): Buffer {
  const compact = value.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) {
    throw new ComposeError(field, `${field} is not base64`);
  }
  return Buffer.from(compact, "base64");
}

/**
 * RFC 5322 2.1.1: no line over 998 octets. MailComposer folds at blanks and encodes bodies,
 * but a header word longer than a line (a 1000-character subject with no space) stays whole.
 */
function checkLineLengths(raw: Uint8Array): void {
  const text = Buffer.from(raw).toString("latin1");
  const headerEnd = text.indexOf("\r\n\r\n");
  let field = "";
  let offset = 0;
  for (const line of text.split("\r\n")) {
    const inHeader = offset < headerEnd;
    if (inHeader && !/^[ \t]/.test(line)) field = line.slice(0, line.indexOf(":"));
    if (line.length > 998) {
      const name = inHeader ? field : "body";
      throw new ComposeError(name, `${name} has a word too long to fit the 998-octet line limit`);
    }
    offset += line.length + 2;
  }
}
