// The HTTP server: health now; metrics and the admin API join it in later issues.
import type { Database } from "../db/open.ts";

export interface HttpDeps {
  database: Database;
}

export function createHttpHandler(deps: HttpDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/healthz") {
      if (req.method !== "GET" && req.method !== "HEAD") return json(405, { error: "method not allowed" });
      const ok = await deps.database.ping();
      return json(ok ? 200 : 503, { status: ok ? "ok" : "database unavailable" });
    }
    return json(404, { error: "not found" });
  };
}

function json(status: number, body: unknown): Response {
  return Response.json(body, { status });
}
