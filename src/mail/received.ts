// The Received header a receiving MTA prepends (RFC 5321 4.4), with the protocol keywords of
// RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and the TLS details of the hop.

export interface ReceivedInfo {
  helo: string;
  remoteIp: string;
  hostname: string;
  id: string;
  esmtp: boolean;
  tls: { protocol: string; cipher: string } | undefined;
  authUser: string | undefined;
  /** Named only when there is exactly one, so a header never lists a whole Bcc list. */
  recipients: string[];
  date: Date;
}

export function receivedHeader(r: ReceivedInfo): string {
  const proto = r.esmtp ? `ESMTP${r.tls ? "S" : ""}${r.authUser ? "A" : ""}` : "SMTP";
  const ip = r.remoteIp.includes(":") ? `IPv6:${r.remoteIp}` : r.remoteIp;
  const lines = [
    `Received: from ${r.helo} ([${ip}])`,
    `\tby ${r.hostname} (Postern) with ${proto} id ${r.id}`,
  ];
  if (r.tls) lines.push(`\t(using ${r.tls.protocol} with cipher ${r.tls.cipher})`);
  if (r.authUser) lines.push(`\t(authenticated sender: ${r.authUser})`);
  const forClause = r.recipients.length === 1 ? `for <${r.recipients[0]}>` : "";
  lines.push(`\t${forClause}${forClause ? "; " : ""}${rfc5322Date(r.date)}`);
  return `${lines.join("\r\n")}\r\n`;
}

/** The Received field of mail the operator injected (`/api/send`, `postern send`): no client. */
export function injectedReceivedHeader(r: { hostname: string; id: string; via: string; date: Date }): string {
  return `Received: by ${r.hostname} (Postern, via ${r.via}) id ${r.id};\r\n\t${rfc5322Date(r.date)}\r\n`;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `Sun, 29 Nov 2026 08:23:01 +0000` (RFC 5322 3.3), always in UTC. */
export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
