// The HTTP server's routes: health, metrics, the admin API behind a bearer token, the console.

import { keyBySecret } from "../auth/keys.ts";
import type { Database } from "../db/open.ts";
import { type ApiDeps, handleApi, sendRoute } from "./api.ts";
import { bearerToken, tokenMatches } from "./auth.ts";
import { json, methodNotAllowed } from "./responses.ts";

/** The Prometheus text exposition format 0.0.4. */
const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface HttpDeps {
  database: Database;
  adminToken: string | undefined;
  api: ApiDeps;
  /** Serves GET /metrics (no auth) when given. */
  metrics?: { render(): Promise<string> };
  /** The operator console under /admin (console/routes.ts). */
  console?: (req: Request, url: URL) => Promise<Response>;
}

export function createHttpHandler(deps: HttpDeps): (req: Request) => Promise<Response> {
  const route = routes(deps);
  return async (req) => {
    try {
      return await route(req);
    } catch (err) {
      // The database being away is no bug of ours: the client may try again (the health check logs it).
      if (!(await deps.database.ping())) return json(503, { error: "database unavailable, try again later" });
      throw err;
    }
  };
}

function routes(deps: HttpDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/healthz") {
      if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed("GET");
      const ok = await deps.database.ping();
      return json(ok ? 200 : 503, { status: ok ? "ok" : "database unavailable" });
    }
    if (url.pathname === "/metrics" && deps.metrics) {
      if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed("GET");
      return new Response(await deps.metrics.render(), { headers: { "content-type": METRICS_CONTENT_TYPE } });
    }
    if (deps.console && (url.pathname === "/admin" || url.pathname.startsWith("/admin/")))
      return deps.console(req, url);
    if (url.pathname.startsWith("/api/")) {
      const bearer = bearerToken(req.headers.get("authorization"));
      if (bearer !== undefined && deps.adminToken && tokenMatches(bearer, deps.adminToken)) {
        const answer = await handleApi(req, url, deps.api);
        if (answer) return answer;
        return json(404, { error: "not found" });
      }
      // An application's key: /api/send from its own domains, nothing else.
      const key = bearer === undefined ? undefined : await keyBySecret(deps.database.db, bearer);
      if (key) {
        if (url.pathname !== "/api/send") return json(403, { error: "an API key may only POST /api/send" });
        if (req.method !== "POST") return methodNotAllowed("POST");
        return sendRoute(deps.api, req, key);
      }
      if (!deps.adminToken) return json(403, { error: "admin API disabled: set POSTERN_ADMIN_TOKEN" });
      return json(401, { error: "missing or wrong bearer token" });
    }
    return json(404, { error: "not found" });
  };
}
