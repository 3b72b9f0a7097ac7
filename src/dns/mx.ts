// Where to deliver mail for a domain (RFC 5321 5.1, RFC 7505). The choice is pure, fed with the
// outcome of the MX look-up and a random source, so that tests can pin the order of equal hosts.
import type { MxRecord } from "./message.ts";
import type { Resolver } from "./resolver.ts";

export interface MxHost {
  host: string;
  preference: number;
}

export type MxChoice =
  /** Try the hosts in this order; `implicit` when the domain has no MX and is its own host. */
  | { kind: "hosts"; hosts: MxHost[]; implicit: boolean }
  /** The domain says it takes no mail (RFC 7505): bounce at once, 556 5.1.10. */
  | { kind: "null-mx" }
  /** NXDOMAIN: there is no such domain; bounce, 550 5.1.2. */
  | { kind: "no-domain" }
  /** The look-up failed for now (SERVFAIL, timeout, ...): try again later. */
  | { kind: "temporary"; code: string };

/** The MX look-up outcome: the records, or the error it failed with (a node:dns-style code). */
export type MxLookup = { records: MxRecord[] } | { error: { code?: string } };

/**
 * Hosts in preference order, equal preferences shuffled (RFC 5321 5.1 asks senders to spread the
 * load over them). `random` returns a number in [0, 1), like Math.random.
 */
export function chooseMx(domain: string, lookup: MxLookup, random: () => number = Math.random): MxChoice {
  if ("error" in lookup) {
    if (lookup.error.code === "ENOTFOUND") return { kind: "no-domain" };
    // No MX records at all: the domain itself is the one host, at preference 0 (RFC 5321 5.1).
    if (lookup.error.code === "ENODATA") return implicit(domain);
    return { kind: "temporary", code: lookup.error.code ?? "EUNKNOWN" };
  }
  if (lookup.records.length === 0) return implicit(domain);
  const named = lookup.records
    .map((r) => ({ host: r.exchange.replace(/\.$/, "").toLowerCase(), preference: r.priority }))
    .filter((h) => h.host !== "");
  // A null MX is one record with the root as host (RFC 7505 3). A root host beside real hosts
  // breaks its "MUST NOT publish other MX" rule: there, only the root entry is dropped. A root
  // alone at another preference leaves nothing to deliver to either, so it counts the same.
  if (named.length === 0) return { kind: "null-mx" };

  const byPreference = new Map<number, MxHost[]>();
  const seen = new Set<string>();
  for (const h of named.sort((a, b) => a.preference - b.preference)) {
    if (seen.has(h.host)) continue; // listed twice: its best preference counts
    seen.add(h.host);
    byPreference.set(h.preference, [...(byPreference.get(h.preference) ?? []), h]);
  }
  // the Map holds the preferences in ascending order, as they were inserted
  const hosts = [...byPreference.keys()].flatMap((preference) =>
    shuffle(byPreference.get(preference)!, random),
  );
  return { kind: "hosts", hosts, implicit: false };
}

/** Looks the domain's MX records up and chooses. */
export async function findMx(resolver: Resolver, domain: string, random?: () => number): Promise<MxChoice> {
  let lookup: MxLookup;
  try {
    lookup = { records: await resolver.resolve(domain, "MX") };
  } catch (error) {
    lookup = { error: error as { code?: string } };
  }
  return chooseMx(domain, lookup, random);
}

function implicit(domain: string): MxChoice {
  return {
    kind: "hosts",
    hosts: [{ host: domain.replace(/\.$/, "").toLowerCase(), preference: 0 }],
    implicit: true,
  };
}

// Fisher-Yates on a copy.
function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
