// GET /api/tls-reports: the TLS reports (RFC 8460) other senders mailed about our domains, newest
// first, paged by `before` (an id).
import type { Db } from "../db/open.ts";
import { listTlsReports } from "../tlsrpt/received.ts";
import { badRequest, json, limitParam, methodNotAllowed } from "./responses.ts";

export async function handleTlsReports(req: Request, url: URL, db: Db): Promise<Response> {
  if (req.method !== "GET") return methodNotAllowed("GET");
  const limit = limitParam(url.searchParams, 50, 500);
  if (limit instanceof Response) return limit;
  const beforeText = url.searchParams.get("before");
  if (beforeText !== null && !/^\d+$/.test(beforeText)) return badRequest("before", "expected a report id");
  const rows = await listTlsReports(db, {
    domain: url.searchParams.get("domain") ?? undefined,
    limit,
    before: beforeText === null ? undefined : Number(beforeText),
  });
  return json(
    200,
    rows.map((r) => ({
      id: r.id,
      domain: r.domain,
      organization: r.organization,
      reportId: r.reportId,
      start: r.startAt.toISOString(),
      end: r.endAt.toISOString(),
      receivedAt: r.receivedAt.toISOString(),
      report: r.report,
    })),
  );
}
