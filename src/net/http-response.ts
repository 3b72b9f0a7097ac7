// The head of an HTTP/1.1 response (RFC 9112), read from the bytes a connection has received so
// far: the status, and what says how the body is framed, which decides whether the connection
// can carry the next request. Pure, so it is tested without sockets.

/** A head longer than this is refused: no receiver we post to needs more. */
export const MAX_HEAD_BYTES = 16 * 1024;

export interface ResponseHead {
  status: number;
  reason: string;
  /** Lower-case names; a repeated field keeps its last value (only framing and Location are read). */
  fields: Map<string, string>;
  /** The head's length in bytes, the blank line included. */
  size: number;
  /** HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`. */
  keepAlive: boolean;
}

/**
 * How the body after the head ends (RFC 9112 6.3): `length` bytes; none at all; or by anything
 * else (chunked, or the end of the connection), which we do not read: the status is known by
 * then, and the connection is closed rather than reused.
 */
export type BodyFraming = { kind: "length"; bytes: number } | { kind: "none" } | { kind: "unread" };

export class HttpResponseError extends Error {}

const END_OF_HEAD = Buffer.from("\r\n\r\n");
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\r\n]*))?$/;
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The head at the start of `received`, or undefined while it is incomplete. */
export function parseResponseHead(received: Buffer): ResponseHead | undefined {
  const end = received.indexOf(END_OF_HEAD);
  if (end < 0) {
    if (received.length > MAX_HEAD_BYTES)
      throw new HttpResponseError(`response head over ${MAX_HEAD_BYTES} bytes`);
    return undefined;
  }
  if (end > MAX_HEAD_BYTES) throw new HttpResponseError(`response head over ${MAX_HEAD_BYTES} bytes`);
  const [statusLine = "", ...lines] = received.toString("latin1", 0, end).split("\r\n");
  const status = STATUS_LINE.exec(statusLine);
  if (!status)
    throw new HttpResponseError(`not an HTTP/1.x status line: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const fields = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon < 1 || !FIELD_NAME.test(name))
      throw new HttpResponseError(`malformed response header line: ${JSON.stringify(line.slice(0, 80))}`);
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    // a second Content-Length is kept with the first ("5, 7"): not a length to trust, then
    fields.set(key, key === "content-length" && fields.has(key) ? `${fields.get(key)}, ${value}` : value);
  }
  const connection = (fields.get("connection") ?? "").toLowerCase();
  const keepAlive = status[1] === "1" ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  return {
    status: Number(status[2]),
    reason: status[3] ?? "",
    fields,
    size: end + END_OF_HEAD.length,
    keepAlive,
  };
}

/** The framing of the body after `head`, the answer to a POST. */
export function bodyFraming(head: ResponseHead): BodyFraming {
  if (head.status < 200 || head.status === 204 || head.status === 304) return { kind: "none" };
  if (head.fields.has("transfer-encoding")) return { kind: "unread" };
  const length = head.fields.get("content-length");
  // several values, a sign or a space: not a length to trust, so the connection is not reused
  if (length === undefined || !/^\d{1,15}$/.test(length)) return { kind: "unread" };
  return { kind: "length", bytes: Number(length) };
}
