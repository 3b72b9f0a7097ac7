// A receiver's MTA-STS policy (RFC 8461) and what it says of an MX host and of a TLS session.
// Parsing and MX matching are mailauth's; the TLS-RPT result names are RFC 8460 4.3's.
import { parsePolicy, validateMx } from "mailauth/lib/mta-sts";

export type StsMode = "enforce" | "testing" | "none";

export interface StsPolicy {
  /** The policy domain (the recipient domain). */
  domain: string;
  /** The `id` of the `_mta-sts` TXT record it was fetched under. */
  id: string;
  mode: StsMode;
  /** MX patterns: host names, or `*.suffix` for one label under it. */
  mx: string[];
  maxAge: number;
  fetchedAt: Date;
  expiresAt: Date;
}

/** RFC 8460 4.3 result types we can meet (no DANE here). */
export type TlsFailureType =
  | "starttls-not-supported"
  | "certificate-host-mismatch"
  | "certificate-expired"
  | "certificate-not-trusted"
  | "validation-failure"
  | "sts-policy-fetch-error"
  | "sts-policy-invalid"
  | "sts-webpki-invalid";

export interface TlsFailure {
  type: TlsFailureType;
  /** What happened, in words, for logs, replies and the report's failure-reason-code. */
  detail: string;
}

/** A policy file read into its fields; throws an Error naming the first problem. */
export function readPolicyText(text: string): Pick<StsPolicy, "mode" | "mx" | "maxAge"> {
  const p = parsePolicy(text);
  return { mode: p.mode, mx: p.mx ?? [], maxAge: p.maxAge ?? 0 };
}

/** Whether the policy names `host` among its MX patterns (RFC 8461 4.1). */
export function mxAllowed(policy: Pick<StsPolicy, "mode" | "mx">, host: string): boolean {
  return validateMx(host, { mode: policy.mode === "none" ? "testing" : policy.mode, mx: policy.mx }).valid;
}

/** node:tls's reason a certificate did not verify, as the RFC 8460 result type. */
export function certificateFailureType(code: string): TlsFailureType {
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return "certificate-host-mismatch";
  if (code === "CERT_HAS_EXPIRED") return "certificate-expired";
  if (/SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF|CERT_UNTRUSTED/.test(code))
    return "certificate-not-trusted";
  return "validation-failure";
}
