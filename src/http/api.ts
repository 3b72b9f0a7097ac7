// The admin API behind the bearer token: the queue, one message's story, retry and removal,
// injection (/api/send), and the mailboxes. JSON in and out; errors as {error, field?}.
import { z } from "zod";
import type { ApiKey } from "../auth/keys.ts";
import type { Database } from "../db/open.ts";
import { DELIVERY_STATUSES, EVENT_TYPES, type EventType, isDeliveryStatus } from "../db/schema.ts";
import { addressProblem, domainOf, normalizeAddress } from "../mail/address.ts";
import { ComposeError, composeMessage } from "../mail/compose.ts";
import { listEvents } from "../queue/events.ts";
import { listQueue, removeMessage, retryNow, showMessage } from "../queue/inspect.ts";
import { type SubmitDeps, SubmitError, submitMessage } from "../queue/submit.ts";
import { handleHooks } from "./hooks.ts";
import { decodeCursor, mailboxMessages } from "./mailboxes.ts";
import { badRequest, json, limitParam, methodNotAllowed, parsedBody } from "./responses.ts";
import { handleSuppressions } from "./suppressions.ts";
import { handleTlsReports } from "./tls-reports.ts";

export interface ApiDeps extends SubmitDeps {
  database: Database;
}

/**
 * The largest request body the HTTP server reads: a message at the size limit, base64-encoded
 * as an attachment (4/3, plus line breaks and JSON escapes: 1.4), and 64 KiB for the rest.
 * Anything bigger is refused before it is read whole, let alone parsed.
 */
export function maxRequestBodyBytes(maxMessageBytes: number): number {
  return Math.ceil(maxMessageBytes * 1.4) + 64 * 1024;
}

const MAILBOX_PATH = /^\/api\/mailboxes\/([^/]+)\/messages$/;
const MESSAGE_PATH = /^\/api\/messages\/([0-9A-Z]{8,40})(\/retry)?$/;

const address = z.string().min(1).max(320);
const sendRaw = z.strictObject({
  from: address,
  to: z.array(address).min(1).max(1000),
  raw: z.string().min(1),
});
const sendComposed = z.strictObject({
  from: address,
  to: z.array(address).min(1).max(1000),
  cc: z.array(address).max(1000).optional(),
  subject: z.string().max(998),
  text: z.string().optional(),
  html: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  attachments: z
    .array(
      z.strictObject({
        filename: z.string().min(1),
        contentType: z.string().optional(),
        content: z.string(),
      }),
    )
    .optional(),
});

/** Routes an authenticated /api/ request; undefined when no route matches. */
export async function handleApi(req: Request, url: URL, deps: ApiDeps): Promise<Response | undefined> {
  const mailbox = MAILBOX_PATH.exec(url.pathname);
  if (mailbox) {
    if (req.method !== "GET") return methodNotAllowed("GET");
    return listMailbox(deps, decodeURIComponent(mailbox[1]!), url.searchParams);
  }
  if (url.pathname === "/api/queue") {
    if (req.method !== "GET") return methodNotAllowed("GET");
    return listQueueRoute(deps, url.searchParams);
  }
  if (url.pathname === "/api/events") {
    if (req.method !== "GET") return methodNotAllowed("GET");
    return listEventsRoute(deps, url.searchParams);
  }
  if (url.pathname.startsWith("/api/suppressions")) return handleSuppressions(req, url, deps.database.db);
  if (url.pathname.startsWith("/api/hooks")) return handleHooks(req, url, deps.database.db);
  if (url.pathname === "/api/tls-reports") return handleTlsReports(req, url, deps.database.db);
  if (url.pathname === "/api/send") {
    if (req.method !== "POST") return methodNotAllowed("POST");
    return sendRoute(deps, req, undefined);
  }
  const message = MESSAGE_PATH.exec(url.pathname);
  if (!message) return undefined;
  const id = message[1]!;
  if (message[2]) {
    if (req.method !== "POST") return methodNotAllowed("POST");
    if (!(await showMessage(deps.database.db, id))) return json(404, { error: `no message ${id}` });
    return json(200, { id, retried: await retryNow(deps.database.db, id) });
  }
  if (req.method === "GET") {
    const detail = await showMessage(deps.database.db, id);
    return detail ? json(200, detail) : json(404, { error: `no message ${id}` });
  }
  if (req.method === "DELETE") {
    return (await removeMessage(deps.database.db, id))
      ? json(200, { id, deleted: true })
      : json(404, { error: `no message ${id}` });
  }
  return methodNotAllowed("GET, DELETE");
}

async function listQueueRoute(deps: ApiDeps, params: URLSearchParams): Promise<Response> {
  const status = params.get("status") ?? undefined;
  if (status !== undefined && !isDeliveryStatus(status))
    return badRequest("status", `expected one of ${DELIVERY_STATUSES.join(", ")}`);
  const limit = limitParam(params, 100, 1000);
  if (limit instanceof Response) return limit;
  const cursorText = params.get("cursor");
  const cursor = cursorText === null ? undefined : Number(cursorText);
  if (cursor !== undefined && !Number.isSafeInteger(cursor))
    return badRequest("cursor", "not a cursor this API gave out");
  const page = await listQueue(deps.database.db, { status, limit, cursor });
  return json(
    200,
    page.entries,
    page.nextCursor === undefined ? {} : { "x-next-cursor": String(page.nextCursor) },
  );
}

async function listEventsRoute(deps: ApiDeps, params: URLSearchParams): Promise<Response> {
  const type = params.get("type") ?? undefined;
  if (type !== undefined && !(EVENT_TYPES as readonly string[]).includes(type))
    return badRequest("type", `expected one of ${EVENT_TYPES.join(", ")}`);
  const limit = limitParam(params, 100, 1000);
  if (limit instanceof Response) return limit;
  const since = Number(params.get("since") ?? 0);
  if (!Number.isSafeInteger(since) || since < 0) return badRequest("since", "expected an event id");
  const page = await listEvents(deps.database.db, {
    since,
    limit,
    type: type as EventType | undefined,
    messageId: params.get("messageId") ?? undefined,
  });
  // the next page starts after the last event of this one
  const last = page.at(-1);
  return json(200, page, last ? { "x-next-since": String(last.id) } : {});
}

const tooLarge = (limit: number) => json(413, { error: `body: larger than ${limit} octets`, field: "body" });

/** The body as text, or the 413 for one over `limit` (a declared length is refused unread). */
async function cappedText(req: Request, limit: number): Promise<string | Response> {
  if (Number(req.headers.get("content-length") ?? 0) > limit) return tooLarge(limit);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body ?? []) {
    total += chunk.length;
    if (total > limit) return tooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** POST /api/send, by the operator (admin token) or an application (its key). */
export async function sendRoute(deps: ApiDeps, req: Request, key: ApiKey | undefined): Promise<Response> {
  const text = await cappedText(req, maxRequestBodyBytes(deps.maxMessageBytes));
  if (text instanceof Response) return text;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return badRequest("body", "not JSON");
  }
  const isRaw = typeof body === "object" && body !== null && "raw" in body;
  const mail = isRaw ? parsedBody(sendRaw, body) : parsedBody(sendComposed, body);
  if (mail instanceof Response) return mail;
  for (const [field, value] of [["from", mail.from], ...mail.to.map((t, i) => [`to.${i}`, t])] as [
    string,
    string,
  ][]) {
    const problem = addressProblem(normalizeAddress(value));
    if (problem) return badRequest(field, problem);
  }
  let raw: Uint8Array;
  try {
    raw =
      "raw" in mail
        ? // LF alone is how most HTTP clients end lines: read as CRLF, as Postfix's sendmail
          // does. A CR alone has no such reading and is refused (checkInjectedContent).
          new TextEncoder().encode(mail.raw.replace(/\r?\n/g, "\r\n"))
        : await composeMessage({ ...mail, messageIdDomain: domainOf(mail.from), date: new Date() });
  } catch (err) {
    if (err instanceof ComposeError) return badRequest(err.field, err.message);
    throw err;
  }
  try {
    const { id, suppressed } = await submitMessage(deps, {
      from: mail.from,
      to: [...mail.to, ...("cc" in mail ? (mail.cc ?? []) : [])],
      raw,
      via: "api",
      key,
      field: "raw" in mail ? "raw" : "message",
    });
    return json(202, { id, suppressed });
  } catch (err) {
    if (err instanceof SubmitError)
      return json(
        err.status,
        { error: `${err.field}: ${err.reason}`, field: err.field },
        err.retryAt
          ? { "retry-after": String(Math.max(1, Math.ceil((err.retryAt.getTime() - Date.now()) / 1000))) }
          : {},
      );
    throw err;
  }
}

async function listMailbox(deps: ApiDeps, rawAddress: string, params: URLSearchParams): Promise<Response> {
  const address = normalizeAddress(rawAddress);
  const problem = addressProblem(address);
  if (problem) return badRequest("address", problem);
  const limit = limitParam(params, 50, 500);
  if (limit instanceof Response) return limit;
  const cursorText = params.get("cursor");
  const cursor = cursorText === null ? undefined : decodeCursor(cursorText);
  if (cursorText !== null && !cursor) return badRequest("cursor", "not a cursor this API gave out");
  const page = await mailboxMessages(deps.database.db, address, limit, cursor);
  // The body is the array itself; the next page is named in headers (as GitHub's API does).
  const headers: Record<string, string> = {};
  if (page.nextCursor) {
    const next = new URLSearchParams({ limit: String(limit), cursor: page.nextCursor });
    headers["x-next-cursor"] = page.nextCursor;
    headers.link = `</api/mailboxes/${encodeURIComponent(address)}/messages?${next}>; rel="next"`;
  }
  return json(200, page.messages, headers);
}
