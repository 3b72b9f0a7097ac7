// TLS reports mailed to us (RFC 8460 5.3): the report is the message's application/tlsrpt+gzip
// (or +json) part. postal-mime reads the MIME; the JSON is checked for the fields we keep.
import { gunzipSync } from "node:zlib";
import { and, desc, eq, lt } from "drizzle-orm";
import PostalMime from "postal-mime";
import { z } from "zod";
import type { Db } from "../db/open.ts";
import { tlsReportsReceived } from "../db/schema.ts";
import type { Courier, Job } from "../delivery/courier.ts";
import { domainOf } from "../mail/address.ts";
import type { AttemptReport } from "../queue/settle.ts";

const reportShape = z.looseObject({
  "organization-name": z.string().min(1),
  "date-range": z.looseObject({
    "start-datetime": z.iso.datetime({ offset: true }),
    "end-datetime": z.iso.datetime({ offset: true }),
  }),
  "report-id": z.string().min(1),
  policies: z.array(z.looseObject({ policy: z.looseObject({ "policy-domain": z.string() }) })),
});
export type ReceivedReport = z.output<typeof reportShape>;

/** The report a message carries; throws an Error saying why it is not one. */
export async function readTlsReportMessage(raw: Uint8Array): Promise<ReceivedReport> {
  const email = await PostalMime.parse(raw, { attachmentEncoding: "arraybuffer" });
  const part = email.attachments.find((a) => /^application\/tlsrpt\+(gzip|json)$/i.test(a.mimeType));
  if (!part) throw new Error("no application/tlsrpt+gzip or +json part");
  let text: string;
  try {
    const bytes = new Uint8Array(part.content as ArrayBuffer);
    text = Buffer.from(/gzip/i.test(part.mimeType) ? gunzipSync(bytes) : bytes).toString("utf8");
  } catch (err) {
    throw new Error(`the report does not unpack: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("the report is not JSON");
  }
  const parsed = reportShape.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`the report's ${issue.path.join(".") || "body"}: ${issue.message}`);
  }
  return parsed.data;
}

export async function storeTlsReport(db: Db, domain: string, report: ReceivedReport): Promise<number> {
  const [row] = await db
    .insert(tlsReportsReceived)
    .values({
      domain,
      organization: report["organization-name"],
      reportId: report["report-id"],
      startAt: new Date(report["date-range"]["start-datetime"]),
      endAt: new Date(report["date-range"]["end-datetime"]),
      report,
    })
    .returning({ id: tlsReportsReceived.id });
  return row!.id;
}

/** Newest first; `before`: an id to page from. */
export function listTlsReports(db: Db, o: { domain?: string; limit: number; before?: number }) {
  return db
    .select()
    .from(tlsReportsReceived)
    .where(
      and(
        o.domain ? eq(tlsReportsReceived.domain, o.domain.toLowerCase()) : undefined,
        o.before ? lt(tlsReportsReceived.id, o.before) : undefined,
      ),
    )
    .orderBy(desc(tlsReportsReceived.id))
    .limit(o.limit);
}

/** Delivers mail for tlsrpt@DOMAIN: each copy's report is stored; a message that is not one bounces. */
export function tlsReportCourier(db: Db): Courier {
  return {
    async deliver(jobs: Job[]) {
      const reports: AttemptReport[] = [];
      for (const job of jobs) {
        const base = { deliveryId: job.delivery.id, remoteMta: null, durationMs: 0 };
        let report: ReceivedReport;
        try {
          report = await readTlsReportMessage(job.message.raw);
        } catch (err) {
          reports.push({
            ...base,
            outcome: "bounced",
            status: "5.6.0",
            reply: `550 5.6.0 not a TLS report (RFC 8460): ${(err as Error).message}`,
          });
          continue;
        }
        const id = await storeTlsReport(db, domainOf(job.delivery.rcpt), report);
        reports.push({ ...base, outcome: "delivered", status: "2.0.0", reply: `TLS report stored (${id})` });
      }
      return reports;
    },
  };
}
