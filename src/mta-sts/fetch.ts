// Fetching a policy file (RFC 8461 3.3): https://mta-sts.DOMAIN/.well-known/mta-sts.txt on port
// 443, the certificate verified for that name (system roots plus POSTERN_EXTRA_CA_FILE), no
// redirects, at most 64 KiB. The address comes from our resolver (POSTERN_DNS_SERVERS), so the
// request goes to an IP with the name as SNI and Host.
import https from "node:https";
import tls from "node:tls";
import type { Resolver } from "../dns/resolver.ts";
import { isPublicAddress } from "../net/destinations.ts";
import type { TlsFailureType } from "./policy.ts";

const MAX_POLICY_BYTES = 64 * 1024;
/** A delivery attempt waits on the fetch, so less than RFC 8461 3.3's suggested minute. */
export const POLICY_FETCH_TIMEOUT_MS = 20_000;
const PATH = "/.well-known/mta-sts.txt";

/** Why a policy could not be had, with its RFC 8460 result type. */
export class PolicyFetchError extends Error {
  constructor(
    readonly type: Extract<
      TlsFailureType,
      "sts-policy-fetch-error" | "sts-webpki-invalid" | "sts-policy-invalid"
    >,
    message: string,
  ) {
    super(message);
  }
}

export interface PolicyFetchOptions {
  resolver: Resolver;
  /** PEM roots trusted besides the system's. */
  extraRoots: readonly string[];
  /** Fetch from loopback and private addresses too (test rigs, inner networks). */
  allowPrivate: boolean;
  timeoutMs: number;
}

/** node:tls codes that mean "the certificate", not "the network". */
const CERTIFICATE_ERROR = /^(ERR_TLS_CERT|CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|ERR_SSL)/;

export function policyFetcher(o: PolicyFetchOptions): (domain: string) => Promise<string> {
  const ca = o.extraRoots.length > 0 ? [...tls.rootCertificates, ...o.extraRoots] : undefined;
  return async (domain) => {
    const host = `mta-sts.${domain}`;
    const ip = await addressOf(o, host);
    return new Promise<string>((resolve, reject) => {
      const url = `https://${host}${PATH}`;
      const fail = (type: PolicyFetchError["type"], why: string) => {
        req.destroy();
        reject(new PolicyFetchError(type, `${url}: ${why}`));
      };
      const req = https.request(
        {
          host: ip,
          port: 443,
          servername: host,
          headers: { host },
          path: PATH,
          ca,
          agent: false,
          timeout: o.timeoutMs,
        },
        (res) => {
          if (res.statusCode !== 200) return fail("sts-policy-fetch-error", `HTTP status ${res.statusCode}`);
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_POLICY_BYTES) fail("sts-policy-invalid", `larger than ${MAX_POLICY_BYTES} bytes`);
            else chunks.push(chunk);
          });
          res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
          res.on("error", (e) => fail("sts-policy-fetch-error", e.message));
        },
      );
      req.on("timeout", () => fail("sts-policy-fetch-error", `no answer within ${o.timeoutMs} ms`));
      req.on("error", (e: Error & { code?: string }) =>
        fail(
          CERTIFICATE_ERROR.test(e.code ?? "") ? "sts-webpki-invalid" : "sts-policy-fetch-error",
          e.message,
        ),
      );
      req.end();
    });
  };
}

async function addressOf(o: PolicyFetchOptions, host: string): Promise<string> {
  const found: string[] = [];
  for (const type of ["A", "AAAA"] as const) {
    try {
      found.push(...(await o.resolver.resolve(host, type)));
    } catch {
      // the other family may have one; none at all is said below
    }
  }
  const usable = o.allowPrivate ? found : found.filter(isPublicAddress);
  if (usable.length === 0)
    throw new PolicyFetchError(
      "sts-policy-fetch-error",
      `${host}: ${found.length ? "only private addresses" : "no address"}`,
    );
  return usable[0]!;
}
