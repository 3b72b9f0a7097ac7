// Our own certificate by ACME: for POSTERN_HOSTNAME and mta-sts.DOMAIN of each local domain that
// hosts a policy. The certificate lives in the database, so every node serves it; one node at a
// time orders (a lease on the account row), when none is stored, when the names changed,
// or at two thirds of its lifetime; a failed order is tried again with a doubling delay.
import { and, asc, eq, isNull, lt, ne, or, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { acmeAccounts, certificates, domains } from "../db/schema.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { TlsMaterial } from "../net/tls.ts";
import { Nap } from "../queue/nap.ts";
import { challengeStore } from "./challenges.ts";
import { newAccountKey, obtainCertificate } from "./order.ts";

const ROW = "server";
/** Longer than any order takes (acme-client gives up on a challenge within minutes). */
const ORDER_LEASE_SECONDS = 600;
const CHECK_MS = 3_600_000;
const RETRY_FIRST_MS = 60_000;
/** How soon to look again while another node orders. */
const BUSY_MS = 5_000;

export interface StoredCertificate {
  certPem: string;
  keyPem: string;
  names: string[];
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** When a certificate is due for renewal: two thirds into its lifetime. */
export function renewalDue(cert: Pick<StoredCertificate, "notBefore" | "notAfter">): Date {
  const life = cert.notAfter.getTime() - cert.notBefore.getTime();
  return new Date(cert.notBefore.getTime() + (life * 2) / 3);
}

export interface AcmeManagerOptions {
  db: Db;
  directoryUrl: string;
  /** Roots for the ACME server's HTTPS instead of the system's (POSTERN_ACME_CA_FILE). */
  caPem: string | undefined;
  email: string | undefined;
  hostname: string;
  /** Who this node is, for the ordering lease. */
  owner: string;
  /** Told of the certificate to serve: at start when one is stored, after each renewal (by any node). */
  install(material: TlsMaterial, cert: StoredCertificate): void;
  log: Logger;
  now?: () => number;
}

export class AcmeManager {
  private readonly nap = new Nap();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private installed: string | undefined;
  private retryMs = RETRY_FIRST_MS;

  constructor(private readonly o: AcmeManagerOptions) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        let wait: number;
        try {
          wait = (await this.check()) === "busy" ? BUSY_MS : CHECK_MS;
          this.retryMs = RETRY_FIRST_MS;
        } catch (err) {
          this.o.log.error("ACME certificate not renewed", {
            error: errorMessage(err),
            retryInMs: this.retryMs,
          });
          wait = this.retryMs;
          this.retryMs = Math.min(this.retryMs * 2, CHECK_MS);
        }
        await this.nap.sleep(wait);
      }
    })();
  }

  /** Looks again now (SIGHUP): a certificate another node got, or one that became due. */
  wake(): void {
    this.nap.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.nap.wake();
    await this.loop;
  }

  /**
   * Serves the stored certificate, and orders a new one if it is missing, due or for other names;
   * "busy" when another node is ordering (its certificate is read in a moment).
   */
  async check(): Promise<"done" | "busy"> {
    const names = await this.wantedNames();
    const stored = await this.stored();
    if (stored) this.serve(stored);
    if (stored && !this.due(stored, names)) return "done";
    const accountKeyPem = await this.accountKey();
    if (!(await this.lease())) return "busy";
    try {
      const current = await this.stored();
      if (current && !this.due(current, names)) {
        this.serve(current);
        return "done";
      }
      const got = await obtainCertificate({
        directoryUrl: this.o.directoryUrl,
        caPem: this.o.caPem,
        account: { keyPem: accountKeyPem },
        email: this.o.email,
        names,
        http01: challengeStore(this.o.db),
      });
      const cert: StoredCertificate = {
        certPem: got.certPem,
        keyPem: got.keyPem,
        names,
        serial: got.serial,
        notBefore: got.notBefore,
        notAfter: got.notAfter,
      };
      const row = { ...cert, updatedAt: new Date() };
      await this.o.db
        .insert(certificates)
        .values({ name: ROW, ...row })
        .onConflictDoUpdate({ target: certificates.name, set: row });
      this.o.log.info("ACME certificate obtained", { names, serial: cert.serial, notAfter: cert.notAfter });
      this.serve(cert);
      return "done";
    } finally {
      await this.o.db
        .update(acmeAccounts)
        .set({ orderingBy: null, orderingUntil: null })
        .where(
          and(eq(acmeAccounts.directoryUrl, this.o.directoryUrl), eq(acmeAccounts.orderingBy, this.o.owner)),
        );
    }
  }

  /** The right to order, for ORDER_LEASE_SECONDS: one node at a time, across restarts too. */
  private async lease(): Promise<boolean> {
    const taken = await this.o.db
      .update(acmeAccounts)
      .set({
        orderingBy: this.o.owner,
        orderingUntil: sql`now() + make_interval(secs => ${ORDER_LEASE_SECONDS})`,
      })
      .where(
        and(
          eq(acmeAccounts.directoryUrl, this.o.directoryUrl),
          or(isNull(acmeAccounts.orderingUntil), lt(acmeAccounts.orderingUntil, sql`now()`)),
        ),
      )
      .returning({ by: acmeAccounts.orderingBy });
    return taken.length === 1;
  }

  private due(cert: StoredCertificate, names: string[]): boolean {
    const now = (this.o.now ?? Date.now)();
    const sameNames = cert.names.length === names.length && names.every((n) => cert.names.includes(n));
    return !sameNames || now >= renewalDue(cert).getTime();
  }

  private serve(cert: StoredCertificate): void {
    if (this.installed === cert.serial) return;
    this.installed = cert.serial;
    this.o.install({ cert: cert.certPem, key: cert.keyPem }, cert);
  }

  private async wantedNames(): Promise<string[]> {
    const rows = await this.o.db
      .select({ name: domains.name })
      .from(domains)
      .where(ne(domains.mtaStsMode, "none"))
      .orderBy(asc(domains.name));
    return [this.o.hostname.toLowerCase(), ...rows.map((r) => `mta-sts.${r.name}`)];
  }

  private async stored(): Promise<StoredCertificate | undefined> {
    const [row] = await this.o.db.select().from(certificates).where(eq(certificates.name, ROW));
    return row;
  }

  /** The account's key: made once, by whichever node needs it first (the insert decides). */
  private async accountKey(): Promise<string> {
    const read = async () =>
      (
        await this.o.db
          .select({ keyPem: acmeAccounts.keyPem })
          .from(acmeAccounts)
          .where(eq(acmeAccounts.directoryUrl, this.o.directoryUrl))
      )[0]?.keyPem;
    const stored = await read();
    if (stored) return stored;
    await this.o.db
      .insert(acmeAccounts)
      .values({ directoryUrl: this.o.directoryUrl, keyPem: newAccountKey() })
      .onConflictDoNothing();
    return (await read())!;
  }
}
