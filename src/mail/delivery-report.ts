// Reads a delivery status notification (RFC 3464: multipart/report; report-type=delivery-status)
// that came back for mail we sent: which message (the ENVID we or the submitter gave, else the
// Message-ID in the returned headers) and what happened to each recipient. Pure: bytes in.
import PostalMime from "postal-mime";
import { decodeXtext } from "./dsn.ts";
import { headerValue, readHeaders } from "./headers.ts";

export interface ReportedRecipient {
  /** Final-Recipient (or Original-Recipient) without its address type, lower-cased. */
  address: string;
  /** failed, delayed, delivered, relayed, expanded. */
  action: string;
  /** The enhanced status code, "5.1.1". */
  status: string | undefined;
  /** What the remote said, "550 5.1.1 no such user" (Diagnostic-Code without its type). */
  diagnostic: string | undefined;
  /** The host that said it. */
  remoteMta: string | undefined;
}

export interface DeliveryReport {
  envid: string | undefined;
  /** The Message-ID of the returned message or its headers. */
  messageId: string | undefined;
  reportingMta: string | undefined;
  recipients: ReportedRecipient[];
}

/** True when the message's header fields (`readHeaders`) say it is a delivery status report. */
export function isDeliveryReport(headers: [string, string][]): boolean {
  const type = headerValue(headers, "content-type")?.toLowerCase() ?? "";
  return /^multipart\/report\b/.test(type) && /report-type\s*=\s*"?delivery-status/.test(type);
}

/** The report, or undefined when the message is not one (or has no delivery-status part). */
export async function readDeliveryReport(raw: Uint8Array): Promise<DeliveryReport | undefined> {
  if (!isDeliveryReport(readHeaders(raw))) return undefined;
  const parsed = await PostalMime.parse(raw);
  const text = (type: string) => {
    const part = parsed.attachments.find((a) => a.mimeType.toLowerCase() === type);
    if (!part) return undefined;
    return typeof part.content === "string" ? part.content : new TextDecoder().decode(part.content);
  };
  const status = text("message/delivery-status") ?? text("message/global-delivery-status");
  if (status === undefined) return undefined;
  const [perMessage = new Map<string, string>(), ...perRecipient] = fieldGroups(status);
  const returned = text("text/rfc822-headers") ?? text("message/rfc822") ?? text("message/global-headers");
  const returnedId = returned === undefined ? undefined : fieldGroups(returned)[0]?.get("message-id");
  const envid = perMessage.get("original-envelope-id");
  return {
    envid: envid === undefined ? undefined : decodeXtext(envid),
    messageId: returnedId,
    reportingMta: typed(perMessage.get("reporting-mta")),
    recipients: perRecipient.flatMap((f) => {
      const address = typed(f.get("final-recipient") ?? f.get("original-recipient"))?.toLowerCase();
      const action = f.get("action")?.toLowerCase();
      if (!address || !action) return [];
      return [
        {
          address,
          action,
          status: f.get("status")?.split(/\s/)[0],
          diagnostic: typed(f.get("diagnostic-code")),
          remoteMta: typed(f.get("remote-mta")),
        },
      ];
    }),
  };
}

/** "rfc822; a@b" → "a@b": a DSN field's value without its type. */
function typed(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(";");
  return (semi < 0 ? value : value.slice(semi + 1)).trim() || undefined;
}

/** Groups of header-style fields separated by empty lines, names lower-cased, folding undone. */
function fieldGroups(text: string): Map<string, string>[] {
  const groups: Map<string, string>[] = [];
  let current: Map<string, string> | undefined;
  let last: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") {
      current = undefined;
      continue;
    }
    if (/^[ \t]/.test(line) && current && last) {
      current.set(last, `${current.get(last)} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    if (!current) {
      current = new Map();
      groups.push(current);
    }
    last = line.slice(0, colon).trim().toLowerCase();
    if (!current.has(last)) current.set(last, line.slice(colon + 1).trim());
  }
  return groups;
}
