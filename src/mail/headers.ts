// Reads a few header fields from a raw message without parsing the MIME tree.
import { addressParser } from "postal-mime";

/** The header block, up to the first empty line. */
function headerBlock(raw: Uint8Array): string {
  const limit = Math.min(raw.length, 256 * 1024);
  let end = limit;
  for (let i = 0; i + 3 < limit; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      end = i;
      break;
    }
  }
  return Buffer.from(raw.subarray(0, end)).toString("utf8");
}

/** Unfolded header fields in order, names lower-cased. */
export function readHeaders(raw: Uint8Array): [string, string][] {
  const out: [string, string][] = [];
  for (const line of headerBlock(raw).split("\r\n")) {
    if ((line.startsWith(" ") || line.startsWith("\t")) && out.length > 0) {
      out[out.length - 1]![1] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon > 0) out.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return out;
}

export function headerValue(headers: [string, string][], name: string): string | undefined {
  // Control characters (NUL above all) cannot be stored in a text column and mean nothing here.
  return headers.find(([n]) => n === name)?.[1].replace(/\p{Cc}/gu, " ");
}

/**
 * The addresses of a From or Sender field as RFC 5322 reads them, lower-cased: a display name, a
 * comment or a group name is not an address, however much it looks like one, so
 * `ceo@other.test (<alice@example.com>)` is ceo@other.test, as a mail client and a DMARC verifier
 * read it. postal-mime's parser is the one of nodemailer and mailauth.
 */
export function fieldAddresses(value: string): string[] {
  return addressParser(value, { flatten: true })
    .map((a) => (a.address ?? "").toLowerCase())
    .filter((a) => a.includes("@"));
}

/** The (first) address of the message's From field, as a reader of the message sees it. */
export function fromAddress(raw: Uint8Array): string | null {
  const value = headerValue(readHeaders(raw), "from");
  return (value && fieldAddresses(value)[0]) || null;
}

export interface HeaderField {
  name: string;
  /** The whole field as on the wire, folding included, without the final CRLF. */
  raw: string;
}

/** Splits a message (latin1, so bytes map 1:1) into its header fields and the body. */
export function splitMessage(message: string): { fields: HeaderField[]; body: string } {
  const end = message.indexOf("\r\n\r\n");
  const head = end < 0 ? message : message.slice(0, end);
  const body = end < 0 ? "" : message.slice(end + 4);
  const fields: HeaderField[] = [];
  for (const line of head.split("\r\n")) {
    if ((line.startsWith(" ") || line.startsWith("\t")) && fields.length > 0) {
      fields[fields.length - 1]!.raw += `\r\n${line}`;
    } else {
      const colon = line.indexOf(":");
      if (colon > 0) fields.push({ name: line.slice(0, colon).trim().toLowerCase(), raw: line });
    }
  }
  return { fields, body };
}

export interface RawField {
  /** The name, lower-cased (ASCII letters only), without the whitespace a fold may leave. */
  key: string;
  /** The whole field as it came, continuation lines included, without the final line end. */
  line: Buffer;
}

// RFC 5322 3.6.8: field-name = 1*ftext (printable US-ASCII but the colon). A fold, and the
// obsolete syntax of 4.5.8, may put whitespace between the name and the colon.
const FIELD_START = /^[\x21-\x39\x3b-\x7e]+[ \t\r\n]*:/;
const NON_ASCII = /[^\p{ASCII}]/u;

/**
 * The fields of a header section, split the way mailauth 7 splits them (its tools.parseHeaders),
 * so what we check, strip and key verdicts on is what mailauth verifies: a line that does not
 * open a field (by the look of its start, not only by leading whitespace) belongs to the field
 * above, and a name folded before its colon is still that name.
 */
export function splitFields(section: Uint8Array): RawField[] {
  const text = Buffer.from(section)
    .toString("latin1")
    .replace(/[\r\n]+$/, "");
  if (text === "") return [];
  const rows = text.split(/\r?\n/).map((row) => [row]);
  const opensField = (row: string[]) => FIELD_START.test(row.length > 1 ? `${row[0]}\r\n${row[1]}` : row[0]!);
  for (let i = rows.length - 1; i > 0; i--) {
    if (!opensField(rows[i]!)) {
      rows[i - 1] = rows[i - 1]!.concat(rows[i]!);
      rows.splice(i, 1);
    }
  }
  return rows.map((row) => {
    const joined = row.join("\r\n");
    const name = (/^[^:]+/.exec(joined)?.[0] ?? "").replace(/\r?\n/g, "").replace(/^[ \t]+|[ \t]+$/g, "");
    const key = NON_ASCII.test(name) ? name.replace(/[A-Z]/g, (c) => c.toLowerCase()) : name.toLowerCase();
    return { key, line: Buffer.from(joined, "latin1") };
  });
}
