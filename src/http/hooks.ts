// /api/hooks: event webhooks (CONTRACT: events, suppressions and keys). The secret is in the
// answer to POST only.
import { z } from "zod";
import type { Db } from "../db/open.ts";
import { HookSpecError, parseHookSpec } from "../hooks/spec.ts";
import { addHook, hookView, listHooks, removeHook } from "../hooks/store.ts";
import { suppressionDomains } from "../queue/suppressions.ts";
import { badRequest, json, jsonBody, methodNotAllowed, parsedBody } from "./responses.ts";

const ONE_PATH = /^\/api\/hooks\/(\d{1,15})$/;

const addRequest = z.strictObject({
  url: z.string().min(1).max(2000),
  events: z.array(z.string()).optional(),
  domain: z.string().min(1).max(253).optional(),
});

export async function handleHooks(req: Request, url: URL, db: Db): Promise<Response | undefined> {
  if (url.pathname === "/api/hooks") {
    if (req.method === "GET") return json(200, (await listHooks(db)).map(hookView));
    if (req.method === "POST") return add(db, await jsonBody(req));
    return methodNotAllowed("GET, POST");
  }
  const one = ONE_PATH.exec(url.pathname);
  if (!one) return undefined;
  if (req.method !== "DELETE") return methodNotAllowed("DELETE");
  const id = Number(one[1]);
  return (await removeHook(db, id))
    ? json(200, { id, deleted: true })
    : json(404, { error: `no hook ${id}` });
}

async function add(db: Db, body: unknown): Promise<Response> {
  const request = parsedBody(addRequest, body);
  if (request instanceof Response) return request;
  let spec: ReturnType<typeof parseHookSpec>;
  try {
    spec = parseHookSpec(request);
  } catch (err) {
    if (err instanceof HookSpecError) return badRequest(err.field, err.reason);
    throw err;
  }
  if (spec.domain && (await suppressionDomains(db, spec.domain)).length === 0)
    return badRequest("domain", "not a local domain");
  const hook = await addHook(db, spec);
  return json(201, { ...hookView(hook), secret: hook.secret });
}
