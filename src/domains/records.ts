// The DNS records a local domain needs, rendered in zone-file syntax.
import { dkimSelectors, dkimTxtValue } from "../mail/dkim.ts";
import { type HostedMode, hostedPolicy } from "../mta-sts/hosted.ts";

export interface DnsRecord {
  name: string;
  type: "MX" | "TXT" | "CNAME";
  value: string;
  /** What the record is for, printed as a comment. */
  purpose: string;
}

export interface DomainKeys {
  name: string;
  dkimSelector: string;
  dkimRsaKey: string;
  dkimEd25519Key: string;
  mtaStsMode: HostedMode;
}

/** The address TLS reports (RFC 8460) for a local domain are sent to; kept, not routed. */
export const tlsReportAddress = (domain: string) => `tlsrpt@${domain}`;

export function domainRecords(domain: DomainKeys, mailHost: string): DnsRecord[] {
  const selectors = dkimSelectors(domain.dkimSelector);
  const d = domain.name;
  const policy = hostedPolicy(domain.mtaStsMode, mailHost);
  const mtaSts: DnsRecord[] = policy
    ? [
        {
          name: `mta-sts.${d}`,
          type: "CNAME",
          value: `${mailHost}.`,
          purpose: `MTA-STS policy host: serves the policy (mode ${domain.mtaStsMode}) over HTTPS`,
        },
        {
          name: `_mta-sts.${d}`,
          type: "TXT",
          value: `v=STSv1; id=${policy.id}`,
          purpose: "MTA-STS policy id",
        },
        {
          name: `_smtp._tls.${d}`,
          type: "TXT",
          value: `v=TLSRPTv1; rua=mailto:${tlsReportAddress(d)}`,
          purpose: "TLS-RPT: where senders report TLS failures",
        },
      ]
    : [];
  return [
    { name: d, type: "MX", value: `10 ${mailHost}.`, purpose: "mail for the domain comes here" },
    { name: d, type: "TXT", value: `v=spf1 mx a:${mailHost} -all`, purpose: "SPF: who may send for it" },
    {
      name: `${selectors.rsa}._domainkey.${d}`,
      type: "TXT",
      value: dkimTxtValue(domain.dkimRsaKey),
      purpose: "DKIM, RSA-2048",
    },
    {
      name: `${selectors.ed25519}._domainkey.${d}`,
      type: "TXT",
      value: dkimTxtValue(domain.dkimEd25519Key),
      purpose: "DKIM, Ed25519",
    },
    {
      name: `_dmarc.${d}`,
      type: "TXT",
      value: `v=DMARC1; p=quarantine; rua=mailto:postmaster@${d}`,
      purpose: "DMARC policy",
    },
    ...mtaSts,
  ];
}

/** A TXT value as zone-file character-strings: each at most 255 octets (RFC 1035 3.3). */
export function txtStrings(value: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  return parts;
}

export function toZoneFile(records: DnsRecord[], ttl = 3600): string {
  return records
    .map((r) => {
      const data =
        r.type === "TXT"
          ? txtStrings(r.value)
              .map((s) => `"${s.replace(/["\\]/g, "\\$&")}"`)
              .join(" ")
          : r.value;
      return `; ${r.purpose}\n${r.name}.\t${ttl}\tIN\t${r.type}\t${data}`;
    })
    .join("\n");
}
