// The stub resolver every DNS look-up of Postern goes through (MX, SPF, DKIM, DMARC, MTA-STS).
// Bun's own resolver splits multi-string TXT records and reports NODATA as NXDOMAIN
// (oven-sh/bun#21370), which breaks RSA-2048 DKIM keys and the implicit-MX rule, hence our own.

import type * as packet from "dns-packet";
import type { DNSResolver } from "mailauth";
import { TtlCache } from "./cache.ts";
import { DnsError, type DnsErrorCode, TransportError } from "./errors.ts";
import {
  encodeQuery,
  interpret,
  isRecordType,
  MAX_CNAME_HOPS,
  matchResponse,
  nameProblem,
  normalizeName,
  RCODE,
  type RecordsOf,
  type RecordType,
  responseCode,
} from "./message.ts";
import { type DnsServer, loadServers } from "./servers.ts";
import { exchangeTcp, exchangeUdp } from "./transport.ts";

export interface ResolverOptions {
  /** Asked in order; a server that fails or stays silent hands the query to the next. */
  servers: DnsServer[];
  /** How long to wait for one server's answer, in ms (default 2000). */
  timeoutMs?: number;
  /** Rounds over the whole server list (default 2), as `attempts` in resolv.conf. */
  attempts?: number;
  /** Cap on one whole look-up, CNAME follow-ups included, in ms (default 10000). */
  deadlineMs?: number;
  /** Cached answers kept at most (default 10000); the oldest go first. */
  cacheEntries?: number;
  /** Told how long each look-up sent to the servers took (cache hits are not), for metrics. */
  onLookup?(type: RecordType, seconds: number): void;
}

// Timers fire with millisecond granularity, a little early or late: a query that could wait less
// than this for its answer is not worth sending.
const MIN_WAIT_MS = 2;

/** A finished look-up as the cache keeps it: records or an error code, with its TTL in seconds. */
type Failure = { ok: false; code: DnsErrorCode; ttl: number };
type Result = { ok: true; records: unknown[]; ttl: number } | Failure;
/** A result and the moment (performance.now()) it stops being valid. */
type TimedResult = { result: Result; expires: number };

export class Resolver {
  readonly servers: readonly DnsServer[];
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly deadlineMs: number;
  private readonly cache: TtlCache<Result>;
  private readonly inflight = new Map<string, Promise<TimedResult>>();
  private readonly onLookup: ResolverOptions["onLookup"];

  constructor(options: ResolverOptions) {
    if (options.servers.length === 0) throw new Error("a resolver needs at least one DNS server");
    this.servers = [...options.servers];
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.attempts = options.attempts ?? 2;
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.cache = new TtlCache(options.cacheEntries ?? 10_000);
    this.onLookup = options.onLookup;
  }

  /**
   * The records of `type` at `name`, after any CNAME chain. Rejects with a DnsError whose code is
   * ENOTFOUND (no such name), ENODATA (the name has no such records), ESERVFAIL, EREFUSED,
   * ETIMEOUT, ECONNREFUSED, EBADRESP, EBADNAME or ENOTIMP. Callers get their own copy of the
   * records: mailauth sorts MX lists in place.
   */
  async resolve<T extends RecordType>(
    name: string,
    type: T,
    /** Told when the answer (records or failure) stops being valid, on performance.now()'s clock. */
    observe?: (expires: number) => void,
  ): Promise<RecordsOf[T]> {
    if (!isRecordType(type)) throw new DnsError("ENOTIMP", name, String(type), "record type not supported");
    const normalized = normalizeName(name);
    const problem = nameProblem(normalized);
    if (problem !== undefined) throw new DnsError("EBADNAME", name, type, problem);
    const { result, expires } = await this.lookup(normalized, type, performance.now() + this.deadlineMs);
    observe?.(expires);
    if (!result.ok) throw new DnsError(result.code, name, type);
    return copyRecords(result.records) as RecordsOf[T];
  }

  /** Forgets every cached answer. */
  clearCache(): void {
    this.cache.clear();
  }

  // The cache first, then a query already on its way for the same (name, type), then a new one:
  // a message's SPF, DKIM and DMARC checks ask for the same names at the same moment.
  private lookup(name: string, type: RecordType, deadline: number): Promise<TimedResult> {
    const key = `${type} ${name}`;
    const cached = this.cache.getEntry(key);
    if (cached !== undefined) return Promise.resolve({ result: cached.value, expires: cached.expires });
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      const started = performance.now();
      pending = this.query(name, type, deadline, 0)
        .catch((): Result => ({ ok: false, code: "EBADRESP", ttl: 0 }))
        .then((result) => {
          const answered = performance.now();
          this.onLookup?.(type, (answered - started) / 1000);
          this.cache.set(key, result, result.ttl);
          return { result, expires: answered + result.ttl * 1000 };
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  private async query(name: string, type: RecordType, deadline: number, depth: number): Promise<Result> {
    let failure: Failure = { ok: false, code: "ETIMEOUT", ttl: 0 };
    const fail = (code: DnsErrorCode) => {
      // a server's own answer (SERVFAIL, REFUSED) says more than another server's silence
      if (code !== "ETIMEOUT" || failure.code === "ETIMEOUT") failure = { ok: false, code, ttl: 0 };
    };
    for (let round = 0; round < this.attempts; round++) {
      for (const server of this.servers) {
        if (deadline - performance.now() < MIN_WAIT_MS) return failure;
        let response: packet.DecodedPacket;
        try {
          response = await this.ask(server, name, type, deadline);
        } catch (error) {
          if (!(error instanceof TransportError)) throw error;
          fail(error.code);
          continue;
        }
        const outcome = interpret(response, name, type);
        switch (outcome.kind) {
          case "records":
            return { ok: true, records: outcome.records, ttl: outcome.ttl };
          case "negative":
            return { ok: false, code: outcome.code, ttl: outcome.ttl };
          case "follow": {
            if (depth >= MAX_CNAME_HOPS) return { ok: false, code: "ESERVFAIL", ttl: 0 };
            // not through lookup(): joining a query in flight could wait on itself around a CNAME loop
            const key = `${type} ${outcome.target}`;
            const cached = this.cache.getEntry(key);
            let target: Result;
            if (cached) {
              // what is left of the cached answer's TTL, not the TTL it came with
              target = { ...cached.value, ttl: (cached.expires - performance.now()) / 1000 };
            } else {
              target = await this.query(outcome.target, type, deadline, depth + 1);
              this.cache.set(key, target, target.ttl);
            }
            return { ...target, ttl: Math.min(target.ttl, outcome.ttl) };
          }
          case "failure":
            fail(outcome.code);
        }
      }
    }
    return failure;
  }

  /** One server's answer: over UDP, again over TCP when truncated, again without EDNS on FORMERR. */
  private async ask(server: DnsServer, name: string, type: RecordType, deadline: number) {
    let edns = true;
    for (;;) {
      const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
      const query = encodeQuery(id, name, type, edns);
      const accept = (message: Buffer) => matchResponse(message, id, name, type);
      let response = await exchangeUdp(server, query, this.timeLeft(deadline), accept);
      if (response.flag_tc) response = await exchangeTcp(server, query, this.timeLeft(deadline), accept);
      // a server from before EDNS0 may answer FORMERR to the OPT record (RFC 6891 7)
      if (edns && responseCode(response) === RCODE.FORMERR) {
        edns = false;
        continue;
      }
      return response;
    }
  }

  private timeLeft(deadline: number): number {
    const left = Math.min(this.timeoutMs, deadline - performance.now());
    if (left < MIN_WAIT_MS) throw new TransportError("ETIMEOUT", "look-up deadline passed");
    return left;
  }
}

/** A Resolver on config.dnsServers, or on the system's resolvers when that is unset. */
export async function createResolver(
  configured: string[] | undefined,
  options: Omit<ResolverOptions, "servers"> = {},
): Promise<Resolver> {
  return new Resolver({ ...options, servers: await loadServers(configured) });
}

/**
 * The resolver as mailauth's `resolver` option wants it: TXT as string[][], MX as
 * {exchange, priority}[], A/AAAA/PTR/CNAME as string[], failures as errors with a node:dns code.
 */
export function mailauthResolver(resolver: Resolver, observe?: (expires: number) => void): DNSResolver {
  return async (name, rrtype) => {
    if (!isRecordType(rrtype)) throw new DnsError("ENOTIMP", name, rrtype, "record type not supported");
    // mailauth's typings say string[] | string[][], but for MX it reads .exchange and .priority
    return (await resolver.resolve(name, rrtype, observe)) as string[] | string[][];
  };
}

/**
 * A caller's own copy of cached records (mailauth sorts MX lists in place). Records are strings,
 * arrays of strings (TXT) or flat objects (MX), so one level deep is a full copy, and much cheaper
 * than structuredClone on the path every message takes.
 */
function copyRecords(records: unknown[]): unknown[] {
  return records.map((r) => (Array.isArray(r) ? [...r] : typeof r === "object" && r !== null ? { ...r } : r));
}
