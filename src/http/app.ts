// The HTTP server's routes: health, and the admin API behind a bearer token.
import type { Database } from "../db/open.ts";
import { addressProblem, normalizeAddress } from "../mail/address.ts";
import { bearerMatches } from "./auth.ts";
import { decodeCursor, mailboxMessages } from "./mailboxes.ts";

export interface HttpDeps {
  database: Database;
  adminToken: string | undefined;
}

const MAILBOX_PATH = /^\/api\/mailboxes\/([^/]+)\/messages$/;

export function createHttpHandler(deps: HttpDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/healthz") {
      if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed("GET");
      const ok = await deps.database.ping();
      return json(ok ? 200 : 503, { status: ok ? "ok" : "database unavailable" });
    }
    if (url.pathname.startsWith("/api/")) {
      if (!deps.adminToken) return json(403, { error: "admin API disabled: set POSTERN_ADMIN_TOKEN" });
      if (!bearerMatches(req.headers.get("authorization"), deps.adminToken)) {
        return json(401, { error: "missing or wrong bearer token" });
      }
      const mailbox = MAILBOX_PATH.exec(url.pathname);
      if (mailbox) {
        if (req.method !== "GET") return methodNotAllowed("GET");
        return listMailbox(deps, decodeURIComponent(mailbox[1]!), url.searchParams);
      }
    }
    return json(404, { error: "not found" });
  };
}

async function listMailbox(deps: HttpDeps, rawAddress: string, params: URLSearchParams): Promise<Response> {
  const address = normalizeAddress(rawAddress);
  const problem = addressProblem(address);
  if (problem) return json(400, { error: `address: ${problem}` });
  const limitText = params.get("limit") ?? "50";
  const limit = Number(limitText);
  if (!/^\d+$/.test(limitText) || limit < 1 || limit > 500) {
    return json(400, { error: "limit: expected a whole number from 1 to 500" });
  }
  const cursorText = params.get("cursor");
  const cursor = cursorText === null ? undefined : decodeCursor(cursorText);
  if (cursorText !== null && !cursor) return json(400, { error: "cursor: not a cursor this API gave out" });
  const page = await mailboxMessages(deps.database.db, address, limit, cursor);
  // The body is the array itself; the next page is named in headers (as GitHub's API does).
  const headers: Record<string, string> = {};
  if (page.nextCursor) {
    const next = new URLSearchParams({ limit: String(limit), cursor: page.nextCursor });
    headers["x-next-cursor"] = page.nextCursor;
    headers.link = `</api/mailboxes/${encodeURIComponent(address)}/messages?${next}>; rel="next"`;
  }
  return Response.json(page.messages, { status: 200, headers });
}

function methodNotAllowed(allow: string): Response {
  return Response.json({ error: "method not allowed" }, { status: 405, headers: { allow } });
}

function json(status: number, body: unknown): Response {
  return Response.json(body, { status });
}
