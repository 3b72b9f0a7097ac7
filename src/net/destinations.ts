// Which addresses mail may be carried to when the address came from DNS. A domain's MX or A record
// is written by whoever owns the domain, so an authenticated user (or a forward, or a DSN) could
// otherwise make the gateway connect to loopback or to an inner network on their behalf.
import ipaddr from "ipaddr.js";

/** Addresses in the public internet: not loopback, private, link-local, shared, reserved or multicast. */
export function isPublicAddress(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return false;
  const address = ipaddr.process(ip); // an IPv4-mapped IPv6 address is judged as the IPv4 it carries
  const range = address.range();
  if (range === "unicast") return true;
  // NAT64 (RFC 6052): what counts is the IPv4 address embedded in the low 32 bits.
  if (range === "rfc6052" && address.kind() === "ipv6") {
    const bytes = address.toByteArray().slice(12);
    return ipaddr.fromByteArray(bytes).range() === "unicast";
  }
  return false;
}
