// The JSON answers every API route gives: a body, or {error, field?} saying what was wrong.
import type { z } from "zod";

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers });
}

export function methodNotAllowed(allow: string): Response {
  return json(405, { error: "method not allowed" }, { allow });
}

export const badRequest = (field: string, reason: string) =>
  json(400, { error: `${field}: ${reason}`, field });

/** A whole number from 1 to max, or the 400 that says why not. */
export function limitParam(params: URLSearchParams, fallback: number, max: number): number | Response {
  const text = params.get("limit") ?? String(fallback);
  const n = Number(text);
  return /^\d+$/.test(text) && n >= 1 && n <= max
    ? n
    : badRequest("limit", `expected a whole number from 1 to ${max}`);
}

/** The request body parsed as JSON, or the 400 that says it is not. */
export async function jsonBody(req: Request): Promise<unknown> {
  try {
    return await req.json();
  } catch {
    return badRequest("body", "not JSON");
  }
}

/** A JSON body checked against `schema`: its data, or the 400 naming the first field at fault. */
export function parsedBody<T extends z.ZodType>(schema: T, body: unknown): z.output<T> | Response {
  if (body instanceof Response) return body;
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  return badRequest(issue.path.join(".") || "body", issue.message);
}
