// `webhook:URL` targets: the message POSTed as JSON, signed with the route's secret.
// 2xx is delivered; anything else, or no answer, is retried like a 4xx. Redirects are never
// followed: the operator chose this URL, and a redirect would carry the signed message to one
// the receiver chose (an internal address, or http after https).
import { createHmac } from "node:crypto";
import PostalMime from "postal-mime";
import { fromAddress } from "../mail/headers.ts";
import type { AttemptReport } from "../queue/settle.ts";
import { type Courier, type Job, reportAll } from "./courier.ts";

export const SIGNATURE_HEADER = "X-Postern-Signature";

export interface WebhookPayload {
  id: string;
  /** The header From address; null when there is none. */
  from: string | null;
  /** The envelope sender ("" for a bounce). */
  mailFrom: string;
  to: string[];
  subject: string | null;
  headers: { key: string; value: string }[];
  text: string | null;
  html: string | null;
  authResults: unknown;
  raw: string;
}

/** Hex HMAC-SHA256 of the exact body with the route's secret: what receivers recompute. */
export function signBody(body: string, secret: string): string {
  return createHmac("sha256", secret).update(body).digest("hex");
}

export async function webhookPayload(job: Job): Promise<WebhookPayload> {
  const parsed = await PostalMime.parse(job.message.raw);
  return {
    id: job.message.id,
    from: fromAddress(job.message.raw),
    mailFrom: job.message.mailFrom,
    to: [job.delivery.rcpt],
    subject: parsed.subject ?? null,
    headers: parsed.headers.map((h) => ({ key: h.key, value: h.value })),
    text: parsed.text ?? null,
    html: parsed.html ?? null,
    authResults: job.message.authResults ?? null,
    raw: new TextDecoder().decode(job.message.raw),
  };
}

/** The attempt history's line for an answer; a redirect says where it pointed and that we stayed. */
export function httpReplyText(reply: { status: number; reason: string; location?: string | null }): string {
  const status = `HTTP ${reply.status} ${reply.reason}`.trim();
  if (reply.status < 300 || reply.status >= 400) return status;
  const { location } = reply;
  return `${status}: redirect not followed${location ? ` (Location: ${location.slice(0, 200)})` : ""}`;
}

export class WebhookCourier implements Courier {
  constructor(
    /** The secret of the route that sent this recipient to this URL. */
    private readonly secretFor: (rcpt: string, url: string) => Promise<string | undefined>,
    private readonly timeoutMs = 30_000,
  ) {}

  async deliver(jobs: Job[]): Promise<AttemptReport[]> {
    const reports: AttemptReport[] = [];
    for (const job of jobs) reports.push(...(await this.post(job)));
    return reports;
  }

  private async post(job: Job): Promise<AttemptReport[]> {
    const { target } = job.delivery;
    if (target.kind !== "webhook") throw new Error(`not a webhook target: ${target.kind}`);
    const { url } = target;
    const started = performance.now();
    let host = url;
    // Everything inside the try: one job's failure must not undo the reports of the others.
    try {
      host = new URL(url).host;
      const body = JSON.stringify(await webhookPayload(job));
      const secret = await this.secretFor(job.delivery.rcpt, url);
      const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "Postern" };
      if (secret) headers[SIGNATURE_HEADER.toLowerCase()] = signBody(body, secret);
      const res = await fetch(url, {
        method: "POST",
        body,
        headers,
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: "manual",
      });
      await res.body?.cancel();
      const ok = res.status >= 200 && res.status < 300;
      return reportAll([job], {
        outcome: ok ? "delivered" : "deferred",
        reply: httpReplyText({
          status: res.status,
          reason: res.statusText,
          location: res.headers.get("location"),
        }),
        status: ok ? "2.0.0" : "4.4.0",
        remoteMta: host,
        durationMs: performance.now() - started,
      });
    } catch (err) {
      return reportAll([job], {
        outcome: "deferred",
        reply: `webhook ${host}: ${(err as Error).name === "TimeoutError" ? "timed out" : (err as Error).message}`,
        status: "4.4.1",
        remoteMta: null,
        durationMs: performance.now() - started,
      });
    }
  }
}
