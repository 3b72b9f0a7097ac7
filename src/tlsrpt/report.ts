// An RFC 8460 4 report: one policy domain's TLS sessions over one period, by the policy they
// were made under, with the failures by result type, host and address. Pure.
import type { TlsFailureType } from "../mta-sts/policy.ts";

/** The policy a session was made under, as counted (none: no MTA-STS policy was found). */
export interface CountedPolicy {
  id: string;
  mode: string;
  mx: string[];
  maxAge: number;
}

export interface SessionCount {
  policy: CountedPolicy | undefined;
  result: "success" | TlsFailureType;
  /** The MX host and address of a failure ("" when none was reached). */
  mx: string;
  ip: string;
  /** The last failure's words, for failure-reason-code. */
  detail: string;
  count: number;
}

export interface ReportInput {
  domain: string;
  /** Our host name: organization, contact and report id. */
  submitter: string;
  start: Date;
  end: Date;
  sessions: SessionCount[];
}

export interface TlsReport {
  "organization-name": string;
  "date-range": { "start-datetime": string; "end-datetime": string };
  "contact-info": string;
  "report-id": string;
  policies: {
    policy: {
      "policy-type": "sts" | "no-policy-found";
      "policy-string"?: string[];
      "policy-domain": string;
      "mx-host"?: string[];
    };
    summary: { "total-successful-session-count": number; "total-failure-session-count": number };
    "failure-details"?: {
      "result-type": TlsFailureType;
      "receiving-mx-hostname"?: string;
      "receiving-ip"?: string;
      "failed-session-count": number;
      "failure-reason-code"?: string;
    }[];
  }[];
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

export function reportId(input: Pick<ReportInput, "domain" | "submitter" | "start">): string {
  return `${Math.floor(input.start.getTime() / 1000)}.${input.domain}@${input.submitter}`;
}

/** RFC 8460 5.3: submitter!policy-domain!begin!end!id.json.gz, times in seconds. */
export function reportFileName(input: Pick<ReportInput, "domain" | "submitter" | "start" | "end">): string {
  const s = (d: Date) => Math.floor(d.getTime() / 1000);
  return `${input.submitter}!${input.domain}!${s(input.start)}!${s(input.end)}.json.gz`;
}

export function buildReport(input: ReportInput): TlsReport {
  const byPolicy = Map.groupBy(input.sessions, (s) => (s.policy ? `sts:${s.policy.id}` : "none"));
  return {
    "organization-name": input.submitter,
    "date-range": { "start-datetime": iso(input.start), "end-datetime": iso(input.end) },
    "contact-info": `postmaster@${input.submitter}`,
    "report-id": reportId(input),
    policies: [...byPolicy.values()].map((sessions) => {
      const p = sessions[0]!.policy;
      const failures = sessions.filter((s) => s.result !== "success");
      const total = (list: SessionCount[]) => list.reduce((n, s) => n + s.count, 0);
      return {
        policy: p
          ? {
              "policy-type": "sts" as const,
              "policy-string": [
                "version: STSv1",
                `mode: ${p.mode}`,
                ...p.mx.map((m) => `mx: ${m}`),
                `max_age: ${p.maxAge}`,
              ],
              "policy-domain": input.domain,
              "mx-host": p.mx,
            }
          : { "policy-type": "no-policy-found" as const, "policy-domain": input.domain },
        summary: {
          "total-successful-session-count": total(sessions.filter((s) => s.result === "success")),
          "total-failure-session-count": total(failures),
        },
        ...(failures.length > 0
          ? {
              "failure-details": failures.map((f) => ({
                "result-type": f.result as TlsFailureType,
                ...(f.mx ? { "receiving-mx-hostname": f.mx } : {}),
                ...(f.ip ? { "receiving-ip": f.ip } : {}),
                "failed-session-count": f.count,
                ...(f.detail ? { "failure-reason-code": f.detail.slice(0, 200) } : {}),
              })),
            }
          : {}),
      };
    }),
  };
}
