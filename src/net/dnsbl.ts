// DNS blocklists (RFC 5782): a client address is listed by a zone when <reversed address>.<zone>
// has an A record in 127.0.0.0/8. Answers are cached by the resolver for their TTL. A lookup that
// fails says nothing: the mail goes on (the caller logs and counts it).
import ipaddr from "ipaddr.js";
import type { Resolver } from "../dns/resolver.ts";

/** The name to look up for `ip` in `zone`: reversed octets, or nibbles for IPv6 (RFC 5782 2.1, 2.4). */
export function dnsblName(ip: string, zone: string): string | undefined {
  if (!ipaddr.isValid(ip)) return undefined;
  const address = ipaddr.process(ip); // an IPv4-mapped IPv6 address is looked up as the IPv4
  const labels =
    address.kind() === "ipv4"
      ? address.toByteArray().reverse().map(String)
      : address
          .toByteArray()
          .flatMap((b) => [b >> 4, b & 15])
          .reverse()
          .map((n) => n.toString(16));
  return `${labels.join(".")}.${zone}`;
}

export type DnsblVerdict =
  | { kind: "listed"; zone: string }
  | { kind: "clear" }
  | { kind: "error"; zone: string; code: string };

/** The first zone that lists `ip` (zones in the order given); an error is reported only if none lists it. */
export async function checkDnsbl(
  resolver: Resolver,
  ip: string,
  zones: readonly string[],
): Promise<DnsblVerdict> {
  let error: DnsblVerdict | undefined;
  const answers = await Promise.all(
    zones.map(async (zone) => {
      const name = dnsblName(ip, zone);
      if (!name) return "clear" as const;
      try {
        const records = await resolver.resolve(name, "A");
        return records.some((a) => a.startsWith("127.")) ? ("listed" as const) : ("clear" as const);
      } catch (err) {
        const code = (err as { code?: string }).code ?? "EBADRESP";
        if (code === "ENOTFOUND" || code === "ENODATA") return "clear" as const;
        error ??= { kind: "error", zone, code };
        return "error" as const;
      }
    }),
  );
  const listed = answers.indexOf("listed");
  if (listed >= 0) return { kind: "listed", zone: zones[listed]! };
  return error ?? { kind: "clear" };
}
