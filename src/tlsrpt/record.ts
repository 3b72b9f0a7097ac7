// The `_smtp._tls` TXT record (RFC 8460 3): where a domain wants its TLS reports. Pure.

export type ReportDestination = { kind: "mailto"; address: string } | { kind: "https"; url: string };

/**
 * The destinations of a domain's TLSRPTv1 record among its TXT strings, or undefined when it
 * publishes none (or more than one, which RFC 8460 3 says to treat as none).
 */
export function readTlsRptRecord(txts: string[]): ReportDestination[] | undefined {
  const records = txts.filter((t) => /^v=TLSRPTv1\s*;/.test(t));
  if (records.length !== 1) return undefined;
  const fields = new Map<string, string>();
  for (const part of records[0]!.split(";").slice(1)) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const rua = fields.get("rua");
  if (!rua) return undefined;
  const destinations: ReportDestination[] = [];
  for (const uri of rua.split(",").map((u) => u.trim())) {
    if (/^mailto:/i.test(uri)) {
      const address = decodeURIComponent(uri.slice("mailto:".length).split("?")[0]!);
      if (/^[^@\s]+@[^@\s]+$/.test(address)) destinations.push({ kind: "mailto", address });
    } else if (/^https:\/\//i.test(uri)) {
      try {
        destinations.push({ kind: "https", url: new URL(uri).toString() });
      } catch {
        // not a URL: skipped, the others still get the report
      }
    }
  }
  return destinations.length > 0 ? destinations : undefined;
}
