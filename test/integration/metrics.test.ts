// GET /metrics against a running server: known traffic in (swaks on loopback), the Prometheus
// text parsed back and its values checked.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { queuedId, swaks } from "../helpers/swaks.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Sample[];
  lines: string[];
}

/** A small parser of the text format 0.0.4; throws on a line it cannot read. */
function parseExposition(text: string): Exposition {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: Sample[] = [];
  const lines = text.split("\n");
  expect(lines.at(-1)).toBe(""); // ends with a line feed
  for (const line of lines.slice(0, -1)) {
    if (line === "") continue; // the text format ignores empty lines (prom-client separates families)
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      const map = kind === "HELP" ? help : type;
      if (map.has(name!)) throw new Error(`${kind} twice for ${name}`);
      map.set(name!, rest!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    let pos = 0;
    while (pos < body.length) {
      label.lastIndex = pos;
      const l = label.exec(body);
      if (!l) throw new Error(`bad labels in: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
      pos = label.lastIndex;
    }
    const raw = m[3]!;
    const value =
      raw === "+Inf" ? Number.POSITIVE_INFINITY : raw === "-Inf" ? Number.NEGATIVE_INFINITY : Number(raw);
    if (raw !== "NaN" && Number.isNaN(value)) throw new Error(`bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { help, type, samples, lines };
}

/** The metric family a sample belongs to (a histogram's _bucket/_sum/_count go to the histogram). */
function familyOf(e: Exposition, name: string): string {
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return base !== name && e.type.get(base) === "histogram" ? base : name;
}

function value(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = e.samples.filter(
    (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want,
  );
  if (found.length !== 1) throw new Error(`${found.length} samples for ${name} ${want}`);
  return found[0]!.value;
}

/** Every histogram series: buckets cumulative and increasing in le, +Inf equal to _count. */
function checkHistograms(e: Exposition): void {
  for (const [family, t] of e.type) {
    if (t !== "histogram") continue;
    const series = new Map<string, Sample[]>();
    for (const s of e.samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    expect(series.size).toBeGreaterThan(0);
    for (const buckets of series.values()) {
      const { le: _le, ...labels } = buckets[0]!.labels;
      const les = buckets.map((b) =>
        b.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(b.labels.le),
      );
      expect(les.at(-1)).toBe(Number.POSITIVE_INFINITY);
      for (let i = 1; i < buckets.length; i++) {
        expect(les[i]!).toBeGreaterThan(les[i - 1]!);
        expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
      }
      const count = value(e, `${family}_count`, labels);
      expect(buckets.at(-1)!.value).toBe(count);
      const sum = value(e, `${family}_sum`, labels);
      expect(sum).toBeGreaterThanOrEqual(0);
      if (count === 0) expect(sum).toBe(0);
    }
  }
}

describe.skipIf(!havePostgres)("GET /metrics on PostgreSQL", () => {
  let server: RunningServer;
  let sink: SmtpPeer;
  let base: string;
  const queuedIds: string[] = [];

  const scrape = async (): Promise<Exposition> => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    return parseExposition(await res.text());
  };

  /** Scrapes until `ready` holds (the scheduler works in the background). */
  const scrapeUntil = async (ready: (e: Exposition) => boolean, timeoutMs = 15_000): Promise<Exposition> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await scrape();
      if (ready(e) || Date.now() > deadline) return e;
      await Bun.sleep(100);
    }
  };

  beforeAll(async () => {
    sink = await SmtpPeer.start({ dataReply: () => "554 5.6.0 refused after the data" });
    const url = await freshDatabaseUrl();
    const env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test" });
    const run = async (...args: string[]) => expect((await runCli(args, env)).code).toBe(0);
    await run("domain", "add", "example.test");
    await run("route", "add", "*@example.test", "mailbox");
    await run("route", "add", "inner@example.test", `relay:127.0.0.1:${sink.port}`);
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: "mx.example.test",
    });
    base = `http://127.0.0.1:${server.httpPort}`;
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
    await sink?.stop();
  });

  test("the format: HELP and TYPE for every metric, the content type, GET only, no auth", async () => {
    const e = await scrape();
    const families = new Set(e.samples.map((s) => familyOf(e, s.name)));
    for (const f of families) {
      expect(e.help.get(f)).toBeTruthy();
      expect(["counter", "gauge", "histogram"]).toContain(e.type.get(f)!);
    }
    for (const name of [
      "postern_smtp_connections_open",
      "postern_smtp_connections_total",
      "postern_smtp_sessions_total",
      "postern_smtp_session_duration_seconds",
      "postern_messages_received_total",
      "postern_messages_delivered_total",
      "postern_messages_deferred_total",
      "postern_messages_bounced_total",
      "postern_dsns_sent_total",
      "postern_queue_depth",
      "postern_queue_oldest_seconds",
      "postern_delivery_duration_seconds",
      "postern_dns_lookup_duration_seconds",
      "postern_auth_checks_total",
      "postern_auth_failures_total",
    ]) {
      expect(e.type.has(name)).toBe(true);
      expect(families.has(name)).toBe(true);
    }
    // TYPE comes before the family's samples.
    for (const [i, line] of e.lines.entries()) {
      if (line.startsWith("#") || line === "") continue;
      const family = familyOf(e, line.split(/[{ ]/, 1)[0]!);
      expect(e.lines.slice(0, i)).toContain(`# TYPE ${family} ${e.type.get(family)}`);
    }
    checkHistograms(e);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
    expect((await fetch(`${base}/metrics`, { method: "HEAD" })).status).toBe(200);
  });

  test("three messages to a mailbox and a refused relay attempt on the MX port", async () => {
    for (let i = 0; i < 3; i++) {
      const out = await swaks({
        port: server.smtpPorts.smtp,
        from: "sender@remote.test",
        to: "alice@example.test",
      });
      const id = queuedId(out);
      expect(id).toBeTruthy();
      queuedIds.push(id!);
    }
    const refused = await swaks({
      port: server.smtpPorts.smtp,
      from: "sender@remote.test",
      to: "x@elsewhere.test",
    });
    expect(refused).toContain("554 5.7.1");

    // The server sees the last QUIT's close a moment after swaks exits.
    const e = await scrapeUntil((x) => value(x, "postern_smtp_connections_open", { port: "smtp" }) === 0);
    expect(value(e, "postern_messages_received_total", { port: "smtp" })).toBe(3);
    expect(value(e, "postern_messages_received_total", { port: "submission" })).toBe(0);
    expect(value(e, "postern_smtp_connections_total", { port: "smtp" })).toBeGreaterThanOrEqual(4);
    expect(value(e, "postern_smtp_connections_open", { port: "smtp" })).toBe(0);
    expect(value(e, "postern_smtp_sessions_total", { port: "smtp", outcome: "quit" })).toBe(4);
    expect(value(e, "postern_smtp_session_duration_seconds_count", { port: "smtp" })).toBe(4);
    expect(value(e, "postern_queue_depth", { status: "queued" })).toBe(0);
    expect(value(e, "postern_queue_depth", { status: "deferred" })).toBe(0);
    // history is not queue: delivered mail shows in the counters only
    expect(e.samples.some((s) => s.name === "postern_queue_depth" && s.labels.status === "delivered")).toBe(
      false,
    );
    expect(value(e, "postern_queue_oldest_seconds")).toBe(0);
    expect(value(e, "postern_messages_delivered_total", { target: "mailbox" })).toBe(3);
    expect(value(e, "postern_delivery_duration_seconds_count", { target: "mailbox" })).toBe(3);
    expect(value(e, "postern_messages_bounced_total", { target: "mailbox" })).toBe(0);
    checkHistograms(e);

    // Sessions ended equal connections made, whatever the outcome.
    const ended = e.samples
      .filter((s) => s.name === "postern_smtp_sessions_total" && s.labels.port === "smtp")
      .reduce((n, s) => n + s.value, 0);
    expect(ended).toBe(value(e, "postern_smtp_connections_total", { port: "smtp" }));
  }, 30_000);

  test("a bounce through a relay route, its DSN, the DSN's deferral and an AUTH failure", async () => {
    const out = await swaks({
      port: server.smtpPorts.smtp,
      from: "sender@remote.test",
      to: "inner@example.test",
    });
    const id = queuedId(out);
    expect(id).toBeTruthy();
    queuedIds.push(id!);
    const failed = await swaks({
      port: server.smtpPorts.submission,
      from: "someone@example.test",
      to: "friend@remote.test",
      extra: ["--tls", "--auth", "PLAIN", "--auth-user", "nobody@example.test", "--auth-password", "wrong"],
    });
    expect(failed).toContain("535 5.7.8");

    // The relay answers 550: a bounce, and a DSN to sender@remote.test (via MX, whose DNS look-up
    // fails against 127.0.0.1:9, so it is deferred).
    const e = await scrapeUntil(
      (x) =>
        value(x, "postern_messages_bounced_total", { target: "relay" }) === 1 &&
        value(x, "postern_messages_deferred_total", { target: "mx" }) >= 1 &&
        value(x, "postern_smtp_connections_open", { port: "submission" }) === 0,
    );
    expect(value(e, "postern_messages_received_total", { port: "smtp" })).toBe(4);
    expect(value(e, "postern_messages_bounced_total", { target: "relay" })).toBe(1);
    expect(value(e, "postern_messages_delivered_total", { target: "relay" })).toBe(0);
    expect(value(e, "postern_dsns_sent_total", { action: "failed" })).toBe(1);
    expect(value(e, "postern_dsns_sent_total", { action: "delayed" })).toBe(0);
    expect(value(e, "postern_messages_deferred_total", { target: "mx" })).toBeGreaterThanOrEqual(1);
    expect(value(e, "postern_dns_lookup_duration_seconds_count", { type: "MX" })).toBeGreaterThanOrEqual(1);
    expect(value(e, "postern_queue_depth", { status: "deferred" })).toBe(1);
    expect(value(e, "postern_queue_depth", { status: "queued" })).toBe(0);
    expect(value(e, "postern_queue_oldest_seconds")).toBeGreaterThan(0);
    expect(value(e, "postern_auth_failures_total", { port: "submission" })).toBe(1);
    expect(value(e, "postern_auth_failures_total", { port: "smtp" })).toBe(0);
    expect(value(e, "postern_smtp_connections_total", { port: "submission" })).toBe(1);
    checkHistograms(e);

    // Bounded labels only: no address, IP, host, URL or message id anywhere in a sample line.
    const sampleLines = e.lines.filter((l) => l !== "" && !l.startsWith("#"));
    for (const line of sampleLines) {
      expect(line).not.toContain("@");
      expect(line).not.toContain("127.0.0.1");
      for (const qid of queuedIds) expect(line).not.toContain(qid);
    }
    const allowed: Record<string, string[]> = {
      port: ["smtp", "submission", "submissions"],
      outcome: ["quit", "timeout", "error_limit", "closed", "refused_limit", "shutdown", "tls_failed"],
      target: ["mx", "relay", "webhook", "forward", "mailbox", "tls-reports", "other"],
      status: ["queued", "deferred"],
      action: ["failed", "delayed", "delivered"],
      type: ["A", "AAAA", "MX", "TXT", "PTR", "CNAME"],
      how: ["verified", "checked", "reused"],
    };
    for (const s of e.samples) {
      for (const [k, v] of Object.entries(s.labels)) {
        if (k === "le") continue;
        expect(allowed[k]).toContain(v);
      }
    }
  }, 40_000);
});
