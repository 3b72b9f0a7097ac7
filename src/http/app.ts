// The HTTP server's routes: health, and the admin API behind a bearer token.
import type { Database } from "../db/open.ts";
import { type ApiDeps, handleApi, json, methodNotAllowed } from "./api.ts";
import { bearerMatches } from "./auth.ts";

export interface HttpDeps {
  database: Database;
  adminToken: string | undefined;
  api: ApiDeps;
}

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
      const answer = await handleApi(req, url, deps.api);
      if (answer) return answer;
    }
    return json(404, { error: "not found" });
  };
}
