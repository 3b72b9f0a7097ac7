// DNS messages for the resolver, without I/O: the query we send, whether a datagram is the answer
// to it, and what an answer means for the asked name and type (records, NXDOMAIN/NODATA with the
// time they may be cached, or a server failure).
import * as packet from "dns-packet";
import type { DnsErrorCode } from "./errors.ts";

export const RECORD_TYPES = ["A", "AAAA", "MX", "TXT", "PTR", "CNAME"] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

export interface MxRecord {
  /** The host, without a trailing dot; "" for the root (a null MX, RFC 7505). */
  exchange: string;
  priority: number;
}

export interface RecordsOf {
  A: string[];
  AAAA: string[];
  MX: MxRecord[];
  /** One entry per record, each the record's character-strings as sent (never joined or split). */
  TXT: string[][];
  PTR: string[];
  CNAME: string[];
}

/** The UDP payload size we announce with EDNS0: the 2020 DNS flag day value, no IP fragmentation. */
export const EDNS_UDP_PAYLOAD = 1232;
/** RFC 2308 lets NXDOMAIN/NODATA be cached for the SOA minimum; we never keep one longer than this. */
export const MAX_NEGATIVE_TTL_SECONDS = 300;
/** Longest CNAME chain followed (a loop ends here too). */
export const MAX_CNAME_HOPS = 8;

export function isRecordType(type: string): type is RecordType {
  return (RECORD_TYPES as readonly string[]).includes(type);
}

/** Lower-cased, without the trailing dot: the form names are compared and cached in. */
export function normalizeName(name: string): string {
  return name.trim().replace(/\.$/, "").toLowerCase();
}

/**
 * Why `name` (normalized) cannot go into a query, or undefined. dns-packet writes whatever it is
 * given, so an empty or over-long label would silently become a different name on the wire.
 */
export function nameProblem(name: string): string | undefined {
  if (name === "") return "empty name";
  if (Buffer.byteLength(name) > 253) return "longer than 253 octets";
  for (const label of name.split(".")) {
    if (label === "") return "empty label";
    if (Buffer.byteLength(label) > 63) return "label longer than 63 octets";
  }
  return undefined;
}

export function encodeQuery(id: number, name: string, type: RecordType, edns: boolean): Buffer {
  return packet.encode({
    type: "query",
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
    additionals: edns ? [{ type: "OPT", name: ".", udpPayloadSize: EDNS_UDP_PAYLOAD } as packet.Answer] : [],
  });
}

/**
 * The decoded response when `buf` answers our query (same id, a response, the same single
 * question; names compare case-insensitively), else undefined: a stray or forged datagram is
 * ignored, not taken as the answer.
 */
export function matchResponse(
  buf: Buffer,
  id: number,
  name: string,
  type: RecordType,
): packet.DecodedPacket | undefined {
  let response: packet.DecodedPacket;
  try {
    response = packet.decode(buf);
  } catch {
    return undefined;
  }
  if (response.id !== id || !response.flag_qr) return undefined;
  const questions = response.questions ?? [];
  // a truncated answer may come without the question section only in broken servers; be strict
  if (questions.length !== 1) return undefined;
  const q = questions[0]!;
  if (normalizeName(q.name) !== name || q.type !== type || (q.class ?? "IN") !== "IN") return undefined;
  return response;
}

export function responseCode(response: packet.DecodedPacket): number {
  return (response.flags ?? 0) & 0xf;
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export type Outcome<T extends RecordType> =
  | { kind: "records"; records: RecordsOf[T]; ttl: number }
  | { kind: "negative"; code: "ENOTFOUND" | "ENODATA"; ttl: number }
  /** The answer's CNAME chain ends at `target` without its records: ask for the target itself. */
  | { kind: "follow"; target: string; ttl: number }
  | { kind: "failure"; code: DnsErrorCode };

interface RR {
  name: string;
  type: string;
  class?: string;
  ttl?: number;
  data?: unknown;
}

/** What a response to (name, type) says. `name` is normalized. TTLs are in seconds. */
export function interpret<T extends RecordType>(
  response: packet.DecodedPacket,
  name: string,
  type: T,
): Outcome<T> {
  switch (responseCode(response)) {
    case RCODE.NOERROR:
    case RCODE.NXDOMAIN:
      break;
    case RCODE.SERVFAIL:
      return { kind: "failure", code: "ESERVFAIL" };
    case RCODE.REFUSED:
      return { kind: "failure", code: "EREFUSED" };
    case RCODE.FORMERR:
      return { kind: "failure", code: "EFORMERR" };
    case RCODE.NOTIMP:
      return { kind: "failure", code: "ENOTIMP" };
    default:
      return { kind: "failure", code: "EBADRESP" };
  }
  const answers = ((response.answers ?? []) as RR[]).filter((rr) => (rr.class ?? "IN") === "IN");
  const at = (owner: string, t: string) =>
    answers.filter((rr) => rr.type === t && normalizeName(rr.name) === owner);

  // Follow the CNAME chain from the asked name; a recursive server puts the whole chain and the
  // final records in one answer (RFC 1034 4.3.2).
  let current = name;
  let ttl = Number.POSITIVE_INFINITY;
  const seen = new Set([current]);
  for (;;) {
    const own = at(current, type);
    if (own.length > 0) {
      for (const rr of own) ttl = Math.min(ttl, rr.ttl ?? 0);
      return { kind: "records", records: own.map((rr) => convert(type, rr.data)) as RecordsOf[T], ttl };
    }
    const alias = type === "CNAME" ? undefined : at(current, "CNAME")[0];
    if (alias === undefined) break;
    ttl = Math.min(ttl, alias.ttl ?? 0);
    current = normalizeName(String(alias.data));
    if (seen.has(current) || seen.size > MAX_CNAME_HOPS) return { kind: "failure", code: "ESERVFAIL" };
    seen.add(current);
  }

  const soa = ((response.authorities ?? []) as RR[]).find((rr) => rr.type === "SOA");
  if (responseCode(response) === RCODE.NXDOMAIN) {
    return { kind: "negative", code: "ENOTFOUND", ttl: negativeTtl(soa) };
  }
  // A chain that leaves the answer with no SOA beside it comes from a server that does not serve
  // the target (an authoritative one for another zone): the target must be asked on its own.
  if (current !== name && soa === undefined) return { kind: "follow", target: current, ttl };
  return { kind: "negative", code: "ENODATA", ttl: negativeTtl(soa) };
}

// RFC 2308 5: the negative TTL is the smaller of the SOA's own TTL and its MINIMUM field. Without
// an SOA nothing says how long the answer holds, so it is not cached.
function negativeTtl(soa: RR | undefined): number {
  if (soa === undefined) return 0;
  const minimum = (soa.data as packet.SoaData | undefined)?.minimum ?? 0;
  return Math.min(soa.ttl ?? 0, minimum, MAX_NEGATIVE_TTL_SECONDS);
}

function convert(type: RecordType, data: unknown): RecordsOf[RecordType][number] {
  switch (type) {
    case "MX": {
      const mx = data as packet.MxData;
      return {
        exchange: mx.exchange === "." ? "" : mx.exchange.replace(/\.$/, ""),
        priority: mx.preference ?? 0,
      };
    }
    case "TXT": {
      // dns-packet decodes TXT rdata into one Buffer per character-string; keep them apart
      const parts = Array.isArray(data) ? data : [data];
      return parts.map((p: Buffer | string) => (typeof p === "string" ? p : p.toString("utf8")));
    }
    default:
      return String(data);
  }
}
