// `postern domain check`: what DNS publishes for a domain against what it should, record by record.
import type { Resolver } from "../dns/resolver.ts";
import { hostedPolicy } from "../mta-sts/hosted.ts";
import { readPolicyText } from "../mta-sts/policy.ts";
import { type DnsRecord, type DomainKeys, domainRecords } from "./records.ts";

export type CheckStatus = "ok" | "missing" | "differs" | "error";

export interface RecordCheck {
  record: DnsRecord;
  status: CheckStatus;
  /** What was found, or why the look-up failed. */
  published: string[];
  /** A wrong required record makes the check fail; SPF and DMARC wording is the operator's call. */
  required: boolean;
}

function tags(value: string): Map<string, string> {
  return new Map(
    value
      .split(";")
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => {
        const eq = t.indexOf("=");
        return [t.slice(0, eq).trim().toLowerCase(), t.slice(eq + 1).replace(/\s+/g, "")] as [string, string];
      }),
  );
}

/** Whether a published TXT value does the job of the expected one. */
function txtMatches(expected: string, published: string): boolean {
  if (expected.startsWith("v=DKIM1")) {
    const want = tags(expected);
    const got = tags(published);
    return got.get("p") === want.get("p") && (got.get("k") ?? "rsa") === want.get("k");
  }
  return expected === published;
}

async function lookup(resolver: Resolver, record: DnsRecord): Promise<{ values: string[]; error?: string }> {
  try {
    if (record.type === "MX") {
      const mx = await resolver.resolve(record.name, "MX");
      return { values: mx.map((m) => `${m.priority} ${m.exchange.replace(/\.?$/, ".")}`) };
    }
    const txt = await resolver.resolve(record.name, "TXT");
    return { values: txt.map((strings) => strings.join("")) };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOTFOUND" || code === "ENODATA") return { values: [] };
    return { values: [], error: `${code ?? "error"}: ${(err as Error).message}` };
  }
}

/**
 * The MTA-STS policy host is checked by what matters: the policy fetched over HTTPS as a sender
 * would (certificate verified) must be the one we serve, whatever records lead there.
 */
async function policyHostCheck(
  record: DnsRecord,
  domain: DomainKeys,
  mailHost: string,
  fetchPolicy: (domain: string) => Promise<string>,
): Promise<RecordCheck> {
  const want = readPolicyText(hostedPolicy(domain.mtaStsMode, mailHost)!.text);
  let text: string;
  try {
    text = await fetchPolicy(domain.name);
  } catch (err) {
    return { record, status: "error", published: [(err as Error).message], required: true };
  }
  let got: ReturnType<typeof readPolicyText> | undefined;
  try {
    got = readPolicyText(text);
  } catch {
    // shown below as what was served
  }
  const same =
    got !== undefined &&
    got.mode === want.mode &&
    got.maxAge === want.maxAge &&
    got.mx.join(" ") === want.mx.join(" ");
  return {
    record,
    status: same ? "ok" : "differs",
    published: [text.trim().replace(/\r?\n/g, "; ")],
    required: true,
  };
}

export async function checkDomain(
  resolver: Resolver,
  domain: DomainKeys,
  mailHost: string,
  fetchPolicy: (domain: string) => Promise<string>,
): Promise<RecordCheck[]> {
  const expected = domainRecords(domain, mailHost);
  return Promise.all(
    expected.map(async (record): Promise<RecordCheck> => {
      if (record.type === "CNAME") return policyHostCheck(record, domain, mailHost, fetchPolicy);
      const required =
        record.type === "MX" || record.value.startsWith("v=DKIM1") || record.value.startsWith("v=STSv1");
      const { values, error } = await lookup(resolver, record);
      if (error) return { record, status: "error", published: [error], required: true };
      // Only records of the same kind count (v=spf1, v=DKIM1, v=DMARC1): a name has many TXT records.
      const kind = record.value.split(/[;\s]/)[0]!.toLowerCase();
      const relevant =
        record.type === "TXT" ? values.filter((v) => v.toLowerCase().startsWith(kind)) : values;
      if (relevant.length === 0) return { record, status: "missing", published: [], required: true };
      const host = `${mailHost.toLowerCase()}.`;
      const ok =
        record.type === "MX"
          ? relevant.some((v) => v.toLowerCase().endsWith(` ${host}`))
          : relevant.length === 1 && txtMatches(record.value, relevant[0]!);
      return { record, status: ok ? "ok" : "differs", published: relevant, required };
    }),
  );
}

export function formatChecks(checks: RecordCheck[]): string {
  return checks
    .map((c) => {
      const head = `${c.status.padEnd(8)}${c.record.type.padEnd(4)} ${c.record.name} (${c.record.purpose})`;
      if (c.status === "ok") return head;
      const lines = [head, `        expected: ${c.record.value}`];
      for (const p of c.published) lines.push(`        published: ${p}`);
      if (c.status === "differs" && !c.required)
        lines.push("        (not required to match; check it says what you mean)");
      return lines.join("\n");
    })
    .join("\n");
}

export function checksFailed(checks: RecordCheck[]): boolean {
  return checks.some((c) => c.status !== "ok" && (c.required || c.status !== "differs"));
}
