// Look-up failures carry the error codes of node:dns, because that is what mailauth (and anyone
// used to node:dns) branches on: ENOTFOUND is NXDOMAIN, ENODATA an existing name without records
// of the asked type; the rest are temporary failures.

export type DnsErrorCode =
  | "ENOTFOUND"
  | "ENODATA"
  | "ESERVFAIL"
  | "EREFUSED"
  | "EFORMERR"
  | "ENOTIMP"
  | "ETIMEOUT"
  | "EBADNAME"
  | "EBADRESP"
  | "ECONNREFUSED";

export class DnsError extends Error {
  override readonly name = "DnsError";

  constructor(
    readonly code: DnsErrorCode,
    readonly hostname: string,
    readonly rrtype: string,
    detail?: string,
  ) {
    super(`${code} ${hostname} ${rrtype}${detail ? `: ${detail}` : ""}`);
  }
}

/** A failure to talk to one server (before there is any answer to interpret). */
export class TransportError extends Error {
  constructor(
    readonly code: "ETIMEOUT" | "ECONNREFUSED" | "EBADRESP",
    message: string,
  ) {
    super(message);
  }
}
