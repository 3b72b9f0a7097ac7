// Who is local and where their mail goes. Domains and routes are small tables read on every RCPT,
// so they are held in memory and reloaded after a short time; several instances on one database
// see each other's changes within that time.
import { createHash } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { domains, routes, users } from "../db/schema.ts";
import { domainOf } from "../mail/address.ts";
import { dkimSelectors } from "../mail/dkim.ts";
import type { DkimKey } from "../mail/dkim-sign.ts";
import { type HostedMode, hostedModeOf } from "../mta-sts/hosted.ts";
import { parseRouteTarget, type RouteTarget } from "./targets.ts";

export interface Route {
  pattern: string;
  target: RouteTarget;
  secret: string | null;
}

interface Snapshot {
  loadedAt: number;
  /** Each local domain's DKIM keys, RSA first: submissions sign with them without a query. */
  domains: Map<string, [rsa: DkimKey, ed25519: DkimKey]>;
  routes: Map<string, Route>;
}

export class Directory {
  private current: Snapshot | undefined;
  private loading: Promise<Snapshot> | undefined;

  constructor(
    private readonly db: Db,
    private readonly maxAgeMs = 2000,
  ) {}

  private async snapshot(): Promise<Snapshot> {
    if (this.current && Date.now() - this.current.loadedAt < this.maxAgeMs) return this.current;
    this.loading ??= this.load().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async load(): Promise<Snapshot> {
    const [d, r] = await Promise.all([
      this.db
        .select({
          name: domains.name,
          selector: domains.dkimSelector,
          rsa: domains.dkimRsaKey,
          ed25519: domains.dkimEd25519Key,
        })
        .from(domains),
      this.db.select().from(routes),
    ]);
    this.current = {
      loadedAt: Date.now(),
      domains: new Map(d.map((x) => [x.name, dkimKeysOf(x)])),
      routes: new Map(
        r.map((x) => [x.pattern, { pattern: x.pattern, target: routeTarget(x), secret: x.secret }]),
      ),
    };
    return this.current;
  }

  /** Forget the cache, e.g. after this process changed the tables. */
  invalidate(): void {
    this.current = undefined;
  }

  async isLocalDomain(domain: string): Promise<boolean> {
    return (await this.snapshot()).domains.has(domain.toLowerCase());
  }

  /**
   * The route for a local address: its own, else its domain's `*@` route, else `mailbox` when it
   * is a login (users can read their mail), else undefined: no such user.
   */
  async routeFor(address: string): Promise<Route | undefined> {
    const addr = address.toLowerCase();
    const snap = await this.snapshot();
    const route = snap.routes.get(addr) ?? snap.routes.get(`*@${domainOf(addr)}`);
    if (route) return route;
    const [user] = await this.db
      .select({ address: users.address })
      .from(users)
      .where(eq(users.address, addr));
    return user ? { pattern: addr, target: { kind: "mailbox" }, secret: null } : undefined;
  }

  /** The secret of the route that sends `rcpt` to the webhook `url`, or of any route to it. */
  async secretFor(rcpt: string, url: string): Promise<string | undefined> {
    const toUrl = (r: Route | undefined) => r?.target.kind === "webhook" && r.target.url === url && r.secret;
    const own = await this.routeFor(rcpt);
    if (toUrl(own)) return own!.secret!;
    for (const r of (await this.snapshot()).routes.values()) if (toUrl(r)) return r.secret!;
    return undefined;
  }

  /** A local domain's two DKIM keys, RSA first (undefined when the domain is not local). */
  async dkimKeys(domain: string): Promise<[rsa: DkimKey, ed25519: DkimKey] | undefined> {
    return (await this.snapshot()).domains.get(domain.toLowerCase());
  }

  /** The MTA-STS mode a local domain's hosted policy has (undefined when the domain is not local). */
  async mtaStsMode(domain: string): Promise<HostedMode | undefined> {
    const [row] = await this.db
      .select({ mode: domains.mtaStsMode })
      .from(domains)
      .where(eq(domains.name, domain.toLowerCase()));
    return row && hostedModeOf(row.mode);
  }

  /** The ARC/SRS key material of a local domain: its RSA DKIM key (undefined when not local). */
  async signingKey(domain: string): Promise<DkimKey | undefined> {
    return (await this.dkimKeys(domain))?.[0];
  }

  /** The SRS secret of a local domain: derived from its private key, so every instance shares it. */
  async srsSecret(domain: string): Promise<string | undefined> {
    const key = await this.signingKey(domain);
    return key && createHash("sha256").update(`srs:${key.privateKey}`).digest("hex");
  }
}

/** Routes are written through `parseRouteTarget`; one that no longer parses is named, not skipped. */
function routeTarget(row: { pattern: string; target: string }): RouteTarget {
  try {
    return parseRouteTarget(row.target);
  } catch (err) {
    throw new Error(`route ${row.pattern}: ${(err as Error).message}`);
  }
}

function dkimKeysOf(row: {
  name: string;
  selector: string;
  rsa: string;
  ed25519: string;
}): [rsa: DkimKey, ed25519: DkimKey] {
  const selectors = dkimSelectors(row.selector);
  return [
    { domain: row.name, selector: selectors.rsa, privateKey: row.rsa },
    { domain: row.name, selector: selectors.ed25519, privateKey: row.ed25519 },
  ];
}
