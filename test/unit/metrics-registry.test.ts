import { describe, expect, test } from "bun:test";
import { targetLabel } from "../../src/metrics/postern.ts";
import { escapeLabelValue, formatValue, Registry } from "../../src/metrics/registry.ts";
import { readStoredTarget } from "../../src/queue/claim.ts";

describe("metrics registry", () => {
  test("counters: HELP and TYPE once, one line per label set, in the text format", async () => {
    const r = new Registry();
    const c = r.counter<"port">({ name: "x_total", help: "Things.", labelNames: ["port"] });
    c.inc({ port: "smtp" });
    c.inc({ port: "smtp" }, 2);
    c.inc({ port: "submission" }, 0);
    const plain = r.counter({ name: "y_total", help: "Plain." });
    plain.inc();
    expect(await r.render()).toBe(
      [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{port="smtp"} 3',
        'x_total{port="submission"} 0',
        "# HELP y_total Plain.",
        "# TYPE y_total counter",
        "y_total 1",
        "",
      ].join("\n"),
    );
    expect(c.get({ port: "smtp" })).toBe(3);
    expect(() => c.inc({ port: "smtp" }, -1)).toThrow();
    // @ts-expect-error a label the counter does not have
    expect(() => c.inc({ port: "smtp", ip: "1.2.3.4" })).toThrow();
  });

  test("label values and HELP are escaped", async () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const r = new Registry();
    const c = r.counter<"v">({ name: "e_total", help: 'Back\\slash "quoted"\nnext line', labelNames: ["v"] });
    c.inc({ v: 'say "hi"\\\n' });
    const text = await r.render();
    expect(text).toContain('# HELP e_total Back\\\\slash "quoted"\\nnext line\n');
    expect(text).toContain('e_total{v="say \\"hi\\"\\\\\\n"} 1\n');
    // every line is one line: the escaped newlines did not break any
    expect(text.split("\n").filter(Boolean)).toHaveLength(3);
  });

  test("special values and names", () => {
    expect(formatValue(Number.NaN)).toBe("NaN");
    expect(formatValue(Number.POSITIVE_INFINITY)).toBe("+Inf");
    expect(formatValue(Number.NEGATIVE_INFINITY)).toBe("-Inf");
    expect(formatValue(0.25)).toBe("0.25");
    const r = new Registry();
    expect(() => r.counter({ name: "bad-name", help: "" })).toThrow();
    expect(() => r.counter({ name: "ok", help: "", labelNames: ["__reserved"] })).toThrow();
    r.histogram({ name: "h", help: "", buckets: [1] });
    expect(() => r.counter({ name: "h_count", help: "" })).toThrow();
    expect(() => r.histogram({ name: "h2", help: "", labelNames: ["le"], buckets: [1] })).toThrow();
    expect(() => r.histogram({ name: "h3", help: "", buckets: [2, 1] })).toThrow();
  });

  test("histograms: cumulative buckets, +Inf, _sum and _count", async () => {
    const r = new Registry();
    const h = r.histogram<"t">({
      name: "d_seconds",
      help: "Durations.",
      labelNames: ["t"],
      buckets: [0.1, 1, 10],
    });
    for (const v of [0.05, 0.1, 0.5, 2, 20, 30]) h.observe({ t: "mx" }, v);
    h.init({ t: "relay" });
    const lines = (await r.render()).split("\n");
    expect(lines.slice(0, 2)).toEqual(["# HELP d_seconds Durations.", "# TYPE d_seconds histogram"]);
    expect(lines.slice(2, 8)).toEqual([
      'd_seconds_bucket{t="mx",le="0.1"} 2',
      'd_seconds_bucket{t="mx",le="1"} 3',
      'd_seconds_bucket{t="mx",le="10"} 4',
      'd_seconds_bucket{t="mx",le="+Inf"} 6',
      'd_seconds_sum{t="mx"} 52.65',
      'd_seconds_count{t="mx"} 6',
    ]);
    expect(lines.slice(8, 14)).toEqual([
      'd_seconds_bucket{t="relay",le="0.1"} 0',
      'd_seconds_bucket{t="relay",le="1"} 0',
      'd_seconds_bucket{t="relay",le="10"} 0',
      'd_seconds_bucket{t="relay",le="+Inf"} 0',
      'd_seconds_sum{t="relay"} 0',
      'd_seconds_count{t="relay"} 0',
    ]);
  });

  test("gauges: set/inc/dec, or a collect callback read at scrape time (async too)", async () => {
    const r = new Registry();
    const g = r.gauge<"port">({ name: "open", help: "Open.", labelNames: ["port"] });
    g.inc({ port: "smtp" });
    g.inc({ port: "smtp" });
    g.dec({ port: "smtp" });
    g.set({ port: "submission" }, 7);
    let depth = 1;
    r.gauge<"status">({
      name: "depth",
      help: "Depth.",
      labelNames: ["status"],
      collect: async () => [
        { labels: { status: "queued" }, value: depth },
        { labels: { status: "deferred" }, value: 0 },
      ],
    });
    r.gauge({ name: "age_seconds", help: "Age.", collect: () => 1.5 });
    depth = 4;
    const text = await r.render();
    expect(text).toContain('open{port="smtp"} 1\nopen{port="submission"} 7\n');
    expect(text).toContain('# TYPE depth gauge\ndepth{status="queued"} 4\ndepth{status="deferred"} 0\n');
    expect(text).toContain("# TYPE age_seconds gauge\nage_seconds 1.5\n");
  });

  test("a failing collect leaves that gauge without samples and the rest intact", async () => {
    const errors: string[] = [];
    const r = new Registry({ onCollectError: (name) => errors.push(name) });
    r.gauge({
      name: "broken",
      help: "Broken.",
      collect: async () => {
        throw new Error("database down");
      },
    });
    r.counter({ name: "fine_total", help: "Fine." }).inc();
    const text = await r.render();
    expect(text).toBe(
      "# HELP broken Broken.\n# TYPE broken gauge\n# HELP fine_total Fine.\n# TYPE fine_total counter\nfine_total 1\n",
    );
    expect(errors).toEqual(["broken"]);
  });

  test("the number of label sets is capped", async () => {
    const r = new Registry({ maxSeries: 3 });
    const c = r.counter<"v">({ name: "capped_total", help: "Capped.", labelNames: ["v"] });
    for (let i = 0; i < 10; i++) c.inc({ v: String(i) });
    expect((await r.render()).split("\n").filter((l) => l.startsWith("capped_total{"))).toHaveLength(3);
  });

  test("target kinds never carry the host, URL or address", () => {
    const label = (text: string) => targetLabel(readStoredTarget(text));
    expect(label("mx")).toBe("mx");
    expect(label("mailbox")).toBe("mailbox");
    expect(label("relay:10.0.0.1:2525")).toBe("relay");
    expect(label("webhook:https://example.com/hook")).toBe("webhook");
    expect(label("forward:bob@example.org")).toBe("forward");
    expect(label("something:else")).toBe("other");
  });
});
