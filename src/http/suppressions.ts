// /api/suppressions: the suppression list as JSON (CONTRACT: events, suppressions and keys).
// Without a domain, an address is added to or lifted from every local domain's list, as the CLI does.
import { z } from "zod";
import type { Db } from "../db/open.ts";
import { addressProblem, normalizeAddress } from "../mail/address.ts";
import {
  addSuppression,
  findSuppression,
  listSuppressions,
  removeSuppression,
  suppressionDomains,
  suppressionView,
} from "../queue/suppressions.ts";
import { badRequest, json, jsonBody, methodNotAllowed, parsedBody } from "./responses.ts";

const ONE_PATH = /^\/api\/suppressions\/([^/]+)$/;

const addRequest = z.strictObject({
  address: z.string().min(1).max(320),
  domain: z.string().min(1).max(253).optional(),
  reason: z.string().min(1).max(200).optional(),
});

export async function handleSuppressions(req: Request, url: URL, db: Db): Promise<Response | undefined> {
  const domain = url.searchParams.get("domain") ?? undefined;
  if (url.pathname === "/api/suppressions") {
    if (req.method === "GET") {
      const rows = await listSuppressions(db, domain);
      return json(200, rows.map(suppressionView));
    }
    if (req.method === "POST") return add(db, await jsonBody(req));
    return methodNotAllowed("GET, POST");
  }
  const one = ONE_PATH.exec(url.pathname);
  if (!one) return undefined;
  if (req.method !== "DELETE") return methodNotAllowed("DELETE");
  const address = normalizeAddress(decodeURIComponent(one[1]!));
  const problem = addressProblem(address);
  if (problem) return badRequest("address", problem);
  const removed: string[] = [];
  for (const d of await suppressionDomains(db, domain)) {
    if (await removeSuppression(db, d, address)) removed.push(d);
  }
  return removed.length > 0
    ? json(200, { address, removed })
    : json(404, { error: `${address} is not suppressed${domain ? ` for ${domain}` : ""}` });
}

async function add(db: Db, body: unknown): Promise<Response> {
  const request = parsedBody(addRequest, body);
  if (request instanceof Response) return request;
  const address = normalizeAddress(request.address);
  const problem = addressProblem(address);
  if (problem) return badRequest("address", problem);
  const domains = await suppressionDomains(db, request.domain);
  if (domains.length === 0)
    return badRequest("domain", request.domain ? "not a local domain" : "there is no local domain");
  const added = [];
  for (const d of domains) {
    await addSuppression(db, d, address, request.reason ?? "added by hand");
    added.push(suppressionView((await findSuppression(db, d, address))!));
  }
  return json(201, added);
}
