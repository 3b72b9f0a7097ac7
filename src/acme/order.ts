// Obtaining a certificate from an ACME CA (RFC 8555) with HTTP-01 validation, on acme-client.
// Only the protocol steps are here: when to renew, where keys and certificates are kept, and
// which names to ask for are the caller's.
import { createPrivateKey, generateKeyPair, generateKeyPairSync, X509Certificate } from "node:crypto";
import { Agent } from "node:https";
import { promisify } from "node:util";
import { crypto as acmeCrypto, Client, directory } from "acme-client";

export interface AcmeAccount {
  /** The account key (PEM), made once by newAccountKey() and kept by the caller. */
  keyPem: string;
  /** The account's URL from an earlier order; without it the CA looks the account up by its key. */
  url?: string;
}

/** Where key authorizations are published for the CA to fetch (an Http01Responder, or shared storage). */
export interface Http01Publisher {
  set(token: string, keyAuthorization: string): void | Promise<void>;
  remove(token: string): void | Promise<void>;
}

export interface ObtainOptions {
  /** The directory URL, or "letsencrypt" for Let's Encrypt's production directory. */
  directoryUrl: string;
  /** Roots to trust (instead of the system's) for the ACME server's own HTTPS (POSTERN_ACME_CA_FILE). */
  caPem?: string;
  account: AcmeAccount;
  email?: string;
  /** The first is the subject CN; all are in the SAN. */
  names: string[];
  http01: Http01Publisher;
}

export interface ObtainedCertificate {
  /** The leaf first, then the chain the CA sent. */
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
  /** Hex, as X509Certificate gives it. */
  serial: string;
  /** Keep it in AcmeAccount.url: later orders then skip the account lookup. */
  accountUrl: string;
}

const DIRECTORY_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 30_000;

/** A new ACME account key: ECDSA P-256 (ES256 signatures: small, fast, accepted by every CA). */
export function newAccountKey(): string {
  return generateKeyPairSync("ec", {
    namedCurve: "P-256",
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  }).privateKey;
}

/**
 * Orders a certificate for `names`, answers HTTP-01 for each through `http01`, and returns it
 * with its fresh key. By asking, the caller agrees to the CA's terms of service. Rejects with a
 * one-line Error "ACME order for NAMES failed: ..." (naming the names that failed validation).
 */
export async function obtainCertificate(o: ObtainOptions): Promise<ObtainedCertificate> {
  try {
    return await order(o);
  } catch (err) {
    throw new Error(`ACME order for ${o.names.join(", ")} failed: ${oneLine(err)}`);
  }
}

async function order(o: ObtainOptions): Promise<ObtainedCertificate> {
  if (o.names.length === 0) throw new Error("no names given");
  try {
    createPrivateKey(o.account.keyPem);
  } catch (err) {
    throw new Error(`the account key is not a private key: ${oneLine(err)}`);
  }
  const directoryUrl = o.directoryUrl === "letsencrypt" ? directory.letsencrypt.production : o.directoryUrl;
  // acme-client retries network errors for over a minute and then reports them as a TypeError:
  // one plain request first says at once what is wrong (unreachable, untrusted certificate).
  await checkDirectory(directoryUrl, o.caPem);
  const client = new Client({
    directoryUrl,
    accountKey: o.account.keyPem,
    accountUrl: o.account.url,
    // polls of challenge and order status: at once, then after 1 s (the default 5 s is most of
    // a fast CA's answer time), doubling up to 30 s: about 2.5 min before giving up
    backoffMin: 1000,
    backoffMax: 30_000,
    backoffAttempts: 10,
  });
  configureRequests(client, o.caPem);
  if (!o.account.url) {
    // For a key the CA knows, acme-client follows up with an account update; `contact` is
    // always there so that update is never empty (pebble refuses empty ones).
    await client.createAccount({ termsOfServiceAgreed: true, contact: o.email ? [`mailto:${o.email}`] : [] });
  }

  const newOrder = await client.createOrder({
    identifiers: o.names.map((value) => ({ type: "dns", value })),
  });
  const authorizations = await client.getAuthorizations(newOrder);
  // allSettled: every challenge ends (and its token is removed) before we answer, and all
  // failed names are reported, not only the first
  const results = await Promise.allSettled(
    authorizations.map(async (authz) => {
      const name = authz.identifier.value;
      try {
        if (authz.status === "valid") return;
        const challenge = authz.challenges.find((c) => c.type === "http-01");
        if (!challenge) throw new Error("the CA offers no http-01 challenge");
        const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
        await o.http01.set(challenge.token, keyAuthorization);
        try {
          await client.completeChallenge(challenge);
          await client.waitForValidStatus(challenge);
        } finally {
          // a token left behind is harmless; failing to withdraw it must not fail the name
          await Promise.resolve()
            .then(() => o.http01.remove(challenge.token))
            .catch(() => {});
        }
      } catch (err) {
        throw new Error(`${name}: ${oneLine(err)}`);
      }
    }),
  );
  const failed = results.flatMap((r) => (r.status === "rejected" ? [oneLine(r.reason)] : []));
  if (failed.length > 0) throw new Error(failed.join("; "));

  const { privateKey: keyPem } = await newCertificateKey();
  const [, csr] = await acmeCrypto.createCsr({ commonName: o.names[0], altNames: o.names }, keyPem);
  const finalized = await client.finalizeOrder(newOrder, csr);
  const certPem = await client.getCertificate(finalized);
  const leaf = new X509Certificate(certPem);
  return {
    certPem,
    keyPem,
    notBefore: leaf.validFromDate,
    notAfter: leaf.validToDate,
    serial: leaf.serialNumber,
    accountUrl: client.getAccountUrl(),
  };
}

// RSA-2048 rather than ECDSA: the certificate is served to SMTP peers, whose long tail
// (old MTAs, appliances) includes TLS stacks without ECDSA suites, and a sender that fails
// the handshake falls back to plain text or gives up. A fresh key for every certificate.
function newCertificateKey(): Promise<{ privateKey: string; publicKey: string }> {
  return promisify(generateKeyPair)("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
}

// acme-client sends everything through one module-wide axios instance and has no per-client
// options for it, so this client's requests get theirs here: an agent trusting only `caPem` (the
// only way to set `ca` for axios' node adapter; other clients and other code keep the system
// roots), a time limit (axios has none by default), and a readable error for a request that got
// no answer (acme-client loses the cause and throws "undefined is not an object"). `http.request`
// is acme-client's own, not its API: the version is pinned and the pebble test goes through it.
function configureRequests(client: Client, caPem: string | undefined): void {
  const httpsAgent = caPem ? new Agent({ ca: caPem }) : undefined;
  const http = (
    client as unknown as { http: { request: (url: string, method: string, opts?: object) => unknown } }
  ).http;
  const request = http.request.bind(http);
  http.request = async (url, method, opts = {}) => {
    try {
      return await request(url, method, {
        ...opts,
        timeout: REQUEST_TIMEOUT_MS,
        ...(httpsAgent ? { httpsAgent } : {}),
      });
    } catch {
      // acme-client answers every HTTP status itself: only a request without one lands here
      throw new Error(`${method.toUpperCase()} ${url}: no answer (connection failed or timed out)`);
    }
  };
}

async function checkDirectory(url: string, caPem: string | undefined): Promise<void> {
  let status: number;
  try {
    const res = await fetch(url, {
      signal: AbortSignal.timeout(DIRECTORY_TIMEOUT_MS),
      ...(caPem ? { tls: { ca: caPem } } : {}),
    });
    status = res.status;
    await res.body?.cancel();
  } catch (err) {
    throw new Error(`directory ${url} unreachable: ${oneLine(err)}`);
  }
  if (status !== 200) throw new Error(`directory ${url} answered HTTP ${status}`);
}

function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s+/g, " ").trim() || (err instanceof Error ? err.name : "unknown error");
}
