// Which MTA-STS policy holds for a recipient domain now (RFC 8461 5.1): the `_mta-sts` TXT id is
// looked up each time (our resolver caches it by TTL); a policy is fetched only when the id is
// new or changed, and kept in the database until its max_age runs out, so a later fetch that
// fails (or is blocked by an attacker), or a restart, leaves the cached policy in force.

import { eq } from "drizzle-orm";
import { resolvePolicy } from "mailauth/lib/mta-sts";
import type { Db } from "../db/open.ts";
import { mtaStsPolicies } from "../db/schema.ts";
import { mailauthResolver, type Resolver } from "../dns/resolver.ts";
import { PolicyFetchError } from "./fetch.ts";
import { readPolicyText, type StsPolicy, type TlsFailure } from "./policy.ts";

/** The policy in force (none: deliver as without MTA-STS), and why a refresh failed, if it did. */
export interface StsLookup {
  policy: StsPolicy | undefined;
  failure?: TlsFailure;
}

/** A fetch that failed is not tried again for the same id sooner than this. */
const FAILED_FETCH_HOLD_MS = 5 * 60_000;
/** A policy still in force is fetched again after this much of its max_age, to keep it fresh. */
const REFRESH_AFTER_FRACTION = 0.5;

export interface StsPoliciesOptions {
  db: Db;
  resolver: Resolver;
  fetch(domain: string): Promise<string>;
  now?: () => number;
}

export class StsPolicies {
  /** Policies as this node last read or fetched them (null: none stored). */
  private readonly known = new Map<string, StsPolicy | null>();
  /** Policy ids whose fetch failed lately: not fetched again until `until`. */
  private readonly failed = new Map<string, { id: string; until: number }>();
  private readonly fetching = new Map<string, Promise<StsLookup>>();
  private readonly now: () => number;

  constructor(private readonly o: StsPoliciesOptions) {
    this.now = o.now ?? Date.now;
  }

  async lookup(domain: string): Promise<StsLookup> {
    const name = domain.toLowerCase().replace(/\.$/, "");
    let cached = await this.cached(name);
    let id: string | false;
    try {
      id = await resolvePolicy(name, { resolver: mailauthResolver(this.o.resolver) });
    } catch {
      // A temporary DNS failure (or two records): the cached policy, if any, holds (5.1).
      return { policy: cached };
    }
    if (id === false) return { policy: cached };
    if (cached?.id !== id) {
      // a fetch of this id failed lately: not again yet, nor the database read for it
      const held = this.failed.get(name);
      if (held && held.id === id && held.until > this.now()) return { policy: cached };
      cached = await this.cached(name, true); // another node may have it
    }
    if (cached?.id === id) {
      if (this.now() - cached.fetchedAt.getTime() > cached.maxAge * 1000 * REFRESH_AFTER_FRACTION)
        this.refresh(name, id, cached).catch(() => {}); // it reports failures as a lookup, never rejects
      return { policy: cached };
    }
    return this.refresh(name, id, cached);
  }

  /** Fetches the policy of `id` (one fetch per domain at a time); on failure `cached` holds. */
  private refresh(domain: string, id: string, cached: StsPolicy | undefined): Promise<StsLookup> {
    let running = this.fetching.get(domain);
    if (!running) {
      running = this.fetchAndStore(domain, id)
        .then((policy): StsLookup => ({ policy }))
        .catch((err: Error): StsLookup => {
          const failure: TlsFailure = {
            type: err instanceof PolicyFetchError ? err.type : "sts-policy-invalid",
            detail: err.message,
          };
          this.failed.set(domain, { id, until: this.now() + FAILED_FETCH_HOLD_MS });
          return { policy: cached, failure };
        })
        .finally(() => this.fetching.delete(domain));
      this.fetching.set(domain, running);
    }
    return running;
  }

  private async fetchAndStore(domain: string, id: string): Promise<StsPolicy> {
    const text = await this.o.fetch(domain);
    let fields: ReturnType<typeof readPolicyText>;
    try {
      fields = readPolicyText(text);
    } catch (err) {
      throw new PolicyFetchError(
        "sts-policy-invalid",
        `https://mta-sts.${domain}: ${(err as Error).message}`,
      );
    }
    const now = this.now();
    const policy: StsPolicy = {
      domain,
      id,
      ...fields,
      fetchedAt: new Date(now),
      expiresAt: new Date(now + fields.maxAge * 1000),
    };
    this.known.set(domain, policy);
    this.failed.delete(domain);
    const row = {
      policyId: id,
      mode: policy.mode,
      mx: policy.mx,
      maxAge: policy.maxAge,
      fetchedAt: policy.fetchedAt,
      expiresAt: policy.expiresAt,
    };
    // Kept in memory even if the database write fails: the next fetch stores it.
    await this.o.db
      .insert(mtaStsPolicies)
      .values({ domain, ...row })
      .onConflictDoUpdate({ target: mtaStsPolicies.domain, set: row })
      .catch(() => {});
    return policy;
  }

  /** The stored policy that has not expired (`reread`: ask the database again). */
  private async cached(domain: string, reread = false): Promise<StsPolicy | undefined> {
    if (reread || !this.known.has(domain)) {
      const [row] = await this.o.db.select().from(mtaStsPolicies).where(eq(mtaStsPolicies.domain, domain));
      this.known.set(
        domain,
        row
          ? {
              domain,
              id: row.policyId,
              mode: row.mode as StsPolicy["mode"],
              mx: row.mx,
              maxAge: row.maxAge,
              fetchedAt: row.fetchedAt,
              expiresAt: row.expiresAt,
            }
          : null,
      );
    }
    const policy = this.known.get(domain);
    return policy && policy.expiresAt.getTime() > this.now() ? policy : undefined;
  }
}
