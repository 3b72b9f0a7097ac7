// Delivery targets: where one recipient's copy goes. Parsed once where the text comes in (the
// route table, the CLI, a claimed delivery row) and carried as a value; stored as its text form.
import { addressProblem, normalizeAddress } from "../mail/address.ts";

/** A route's target: where mail for a local address goes. */
export type RouteTarget =
  | { kind: "mailbox" }
  | { kind: "webhook"; url: string }
  | { kind: "relay"; host: string; port: number; lmtp: boolean }
  | { kind: "forward"; address: string };

/**
 * Any delivery's target: a route's, `mx` (the recipient's MX hosts, or the smarthost), or
 * `tls-reports` (a TLS report to one of our domains, stored: tlsrpt/received.ts).
 */
export type Target = RouteTarget | { kind: "mx" } | { kind: "tls-reports" };

export type TargetKind = Target["kind"];
export const TARGET_KINDS = [
  "mx",
  "relay",
  "webhook",
  "forward",
  "mailbox",
  "tls-reports",
] as const satisfies readonly TargetKind[];

/** Parses a stored target: a route target, `mx` or `tls-reports`; throws a one-line reason. */
export function parseTarget(raw: string): Target {
  if (raw === "mx" || raw === "tls-reports") return { kind: raw };
  return parseRouteTarget(raw);
}

/** Parses `mailbox`, `webhook:URL`, `relay:[lmtp:]HOST[:PORT]` or `forward:ADDRESS`; throws a one-line reason. */
export function parseRouteTarget(raw: string): RouteTarget {
  const colon = raw.indexOf(":");
  const kind = colon < 0 ? raw : raw.slice(0, colon);
  const rest = colon < 0 ? "" : raw.slice(colon + 1);
  switch (kind) {
    case "mailbox":
      if (rest) throw new Error("mailbox takes no argument");
      return { kind: "mailbox" };
    case "webhook": {
      let url: URL;
      try {
        url = new URL(rest);
      } catch {
        throw new Error(`webhook URL "${rest}" is not a URL`);
      }
      if (url.protocol !== "http:" && url.protocol !== "https:")
        throw new Error("webhook URL must be http(s)");
      return { kind: "webhook", url: url.href };
    }
    case "relay": {
      // relay:lmtp:HOST[:PORT] speaks LMTP (RFC 2033) to an inner store such as Dovecot.
      const lmtp = rest.startsWith("lmtp:");
      const hostPort = lmtp ? rest.slice("lmtp:".length) : rest;
      const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(hostPort);
      const port = m?.[2] === undefined ? (lmtp ? 24 : 25) : Number(m[2]);
      if (!m || port < 1 || port > 65535) throw new Error(`relay "${rest}" is not [lmtp:]HOST[:PORT]`);
      return { kind: "relay", host: m[1]!.replace(/^\[|\]$/g, ""), port, lmtp };
    }
    case "forward": {
      const address = normalizeAddress(rest);
      const problem = addressProblem(address);
      if (problem) throw new Error(`forward address "${rest}": ${problem}`);
      return { kind: "forward", address };
    }
    default:
      throw new Error(
        `unknown target "${raw}": expected mailbox, webhook:URL, relay:HOST[:PORT] or forward:ADDRESS`,
      );
  }
}

export function formatTarget(t: Target): string {
  switch (t.kind) {
    case "mx":
    case "tls-reports":
      return t.kind;
    case "mailbox":
      return "mailbox";
    case "webhook":
      return `webhook:${t.url}`;
    case "relay":
      return `relay:${t.lmtp ? "lmtp:" : ""}${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;
    case "forward":
      return `forward:${t.address}`;
  }
}
