// What a new hook is made of, parsed once from the CLI's or the API's words into types.
import { EVENT_TYPES, type EventType } from "../db/schema.ts";

export class HookSpecError extends Error {
  constructor(
    readonly field: "url" | "events" | "domain",
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export interface HookSpec {
  url: URL;
  /** undefined: every type. */
  events: EventType[] | undefined;
  domain: string | undefined;
}

export function parseHookSpec(o: { url: string; events?: readonly string[]; domain?: string }): HookSpec {
  let url: URL;
  try {
    url = new URL(o.url);
  } catch {
    throw new HookSpecError("url", `not a URL: ${o.url}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new HookSpecError("url", `expected http: or https:, not ${url.protocol}`);
  if (url.username || url.password) throw new HookSpecError("url", "credentials in the URL are not kept");
  let events: EventType[] | undefined;
  if (o.events !== undefined) {
    const unknown = o.events.filter((e) => !(EVENT_TYPES as readonly string[]).includes(e));
    if (unknown.length > 0 || o.events.length === 0)
      throw new HookSpecError(
        "events",
        `${unknown.length > 0 ? `unknown ${unknown.join(", ")}` : "none named"}: expected some of ${EVENT_TYPES.join(", ")}`,
      );
    events = [...new Set(o.events as EventType[])];
  }
  return { url, events, domain: o.domain?.toLowerCase() };
}
