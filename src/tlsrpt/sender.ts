// Sending TLS reports (RFC 8460 5): once a period has ended (and every node has had time to add
// its counts), one node claims each domain's period, takes its counts, and sends the report to
// every destination of the domain's `_smtp._tls` record: by mail through our own queue
// (DKIM-signed like any outbound mail), or POSTed gzip'd JSON over HTTPS.
import tls from "node:tls";
import { gzipSync } from "node:zlib";
import { and, asc, eq, sql } from "drizzle-orm";
import MimeNode from "nodemailer/lib/mime-node";
import type { Db } from "../db/open.ts";
import { domains, tlsReportsSent, tlsSessionCounts } from "../db/schema.ts";
import type { Resolver } from "../dns/resolver.ts";
import { errorMessage, type Logger } from "../log.ts";
import { Nap } from "../queue/nap.ts";
import { type ReportDestination, readTlsRptRecord } from "./record.ts";
import { buildReport, type ReportInput, reportFileName, type SessionCount } from "./report.ts";

const POST_TIMEOUT_MS = 30_000;

export interface TlsReportSenderOptions {
  db: Db;
  resolver: Resolver;
  periodSeconds: number;
  /** Our host name: the report's organization and submitter. */
  submitter: string;
  /** PEM roots trusted besides the system's, for https: destinations. */
  extraRoots: readonly string[];
  /** How long after a period ends other nodes may still be adding to it (their flush interval, twice). */
  graceMs: number;
  /** Counts of this node written before a period is claimed. */
  flushCounts(): Promise<void>;
  /** Queues a message from a local address to `to` (submitted as our own, signed on the way). */
  sendMail(from: string, to: string, raw: Uint8Array): Promise<void>;
  log: Logger;
  now?: () => number;
}

export class TlsReportSender {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly nap = new Nap();

  constructor(private readonly o: TlsReportSenderOptions) {}

  start(): void {
    const intervalMs = Math.min(60_000, Math.max(1000, (this.o.periodSeconds * 1000) / 4));
    this.loop = (async () => {
      while (!this.stopped) {
        await this.runOnce().catch((err) =>
          this.o.log.error("TLS reports failed", { error: errorMessage(err) }),
        );
        await this.nap.sleep(intervalMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.nap.wake();
    await this.loop;
  }

  /** Sends the reports of every period that has ended; says how many were sent. */
  async runOnce(): Promise<number> {
    await this.o.flushCounts();
    const now = (this.o.now ?? Date.now)();
    const endedBefore = new Date(now - this.o.periodSeconds * 1000 - this.o.graceMs);
    const due = await this.o.db
      .selectDistinct({ domain: tlsSessionCounts.domain, periodStart: tlsSessionCounts.periodStart })
      .from(tlsSessionCounts)
      .where(sql`${tlsSessionCounts.periodStart} <= ${endedBefore.toISOString()}::timestamptz`)
      .orderBy(asc(tlsSessionCounts.periodStart));
    let sent = 0;
    for (const { domain, periodStart } of due) {
      const sessions = await this.claim(domain, periodStart);
      if (!sessions) continue;
      const outcome = await this.send({
        domain,
        submitter: this.o.submitter,
        start: periodStart,
        end: new Date(periodStart.getTime() + this.o.periodSeconds * 1000),
        sessions,
      });
      if (outcome.sent) sent++;
      await this.o.db
        .update(tlsReportsSent)
        .set({ outcome: outcome.text })
        .where(and(eq(tlsReportsSent.domain, domain), eq(tlsReportsSent.periodStart, periodStart)));
    }
    return sent;
  }

  /** The period's counts if this node is the one to report them (they are taken either way). */
  private claim(domain: string, periodStart: Date): Promise<SessionCount[] | undefined> {
    return this.o.db.transaction(async (tx) => {
      const claimed = await tx
        .insert(tlsReportsSent)
        .values({ domain, periodStart })
        .onConflictDoNothing()
        .returning({ domain: tlsReportsSent.domain });
      const rows = await tx
        .delete(tlsSessionCounts)
        .where(and(eq(tlsSessionCounts.domain, domain), eq(tlsSessionCounts.periodStart, periodStart)))
        .returning();
      if (claimed.length === 0) return undefined; // reported already: these came too late
      return rows.map((r) => ({
        policy: r.policyId
          ? { id: r.policyId, mode: r.policyMode, mx: r.policyMx, maxAge: r.policyMaxAge }
          : undefined,
        result: r.result as SessionCount["result"],
        mx: r.mx,
        ip: r.ip,
        detail: r.detail,
        count: r.count,
      }));
    });
  }

  private async send(input: ReportInput): Promise<{ sent: boolean; text: string }> {
    let destinations: ReportDestination[] | undefined;
    try {
      const txt = await this.o.resolver.resolve(`_smtp._tls.${input.domain}`, "TXT");
      destinations = readTlsRptRecord(txt.map((strings) => strings.join("")));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "ENOTFOUND" && code !== "ENODATA")
        return { sent: false, text: `DNS: ${errorMessage(err)}` };
    }
    if (!destinations) return { sent: false, text: "no TLSRPTv1 record" };
    const report = buildReport(input);
    const gz = gzipSync(JSON.stringify(report));
    const results = await Promise.all(
      destinations.map(async (d) => {
        const where = d.kind === "mailto" ? `mailto:${d.address}` : d.url;
        try {
          if (d.kind === "mailto") await this.mail(d.address, input, report["report-id"], gz);
          else await post(d.url, gz, this.o.extraRoots);
          return { ok: true, text: `${where}: sent` };
        } catch (err) {
          this.o.log.warn("TLS report not sent", {
            domain: input.domain,
            to: where,
            error: errorMessage(err),
          });
          return { ok: false, text: `${where}: ${errorMessage(err)}` };
        }
      }),
    );
    this.o.log.info("TLS report", { domain: input.domain, outcome: results.map((r) => r.text) });
    return { sent: results.some((r) => r.ok), text: results.map((r) => r.text).join("; ") };
  }

  private async mail(to: string, input: ReportInput, id: string, gz: Buffer): Promise<void> {
    const domain = await reportingDomain(this.o.db, this.o.submitter);
    if (!domain) throw new Error("no local domain to send it from");
    const from = `tlsrpt-noreply@${domain}`;
    // RFC 8460 5.3: multipart/report of type tlsrpt, the report gzip'd as application/tlsrpt+gzip.
    const root = new MimeNode('multipart/report; report-type="tlsrpt"');
    root.setHeader({
      from,
      to,
      subject: `Report Domain: ${input.domain} Submitter: ${input.submitter} Report-ID: <${id}>`,
      "TLS-Report-Domain": input.domain,
      "TLS-Report-Submitter": input.submitter,
      date: new Date(),
    });
    root
      .createChild("text/plain")
      .setContent(`This is an aggregate TLS report (RFC 8460) from ${input.submitter}.\r\n`);
    root
      .createChild("application/tlsrpt+gzip", { filename: reportFileName(input) })
      .setHeader("content-disposition", "attachment")
      .setContent(gz);
    await this.o.sendMail(from, to, await root.build());
  }
}

/** The local domain reports come from: the one our host name is in, else the first. */
async function reportingDomain(db: Db, hostname: string): Promise<string | undefined> {
  const rows = await db.select({ name: domains.name }).from(domains).orderBy(asc(domains.name));
  const names = rows.map((r) => r.name);
  return names.find((n) => hostname === n || hostname.endsWith(`.${n}`)) ?? names[0];
}

async function post(url: string, gz: Buffer, extraRoots: readonly string[]): Promise<void> {
  const res = await fetch(url, {
    method: "POST",
    tls: extraRoots.length > 0 ? { ca: [...tls.rootCertificates, ...extraRoots] } : undefined,
    headers: { "content-type": "application/tlsrpt+gzip" },
    body: gz,
    redirect: "manual",
    signal: AbortSignal.timeout(POST_TIMEOUT_MS),
  });
  if (res.status < 200 || res.status > 299) throw new Error(`HTTP status ${res.status}`);
}
