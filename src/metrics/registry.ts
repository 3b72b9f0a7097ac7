// A small Prometheus registry: counters, gauges and histograms with fixed label names, rendered in
// the text exposition format 0.0.4. No dependency; only what Postern needs.
//
// Labels must come from small, fixed sets (a port kind, a target kind, a status): never an
// address, an IP or a message id. As a guard against a mistake, each metric keeps at most
// `maxSeries` label combinations and ignores new ones past that.

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels<L extends string> = Readonly<Record<L, string>>;

export interface Sample<L extends string> {
  labels: Labels<L>;
  value: number;
}

/** What a gauge's collect callback may give: one value (no labels), or one sample per label set. */
export type Collected<L extends string> = number | Sample<L>[];

interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const DEFAULT_MAX_SERIES = 500;

/** Prometheus' rendering of a sample value: integers as they are, and NaN, +Inf, -Inf by name. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}

/** A label value in double quotes: backslash, double quote and line feed escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text: backslash and line feed escaped (a double quote stays as it is). */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return "";
  return `{${names.map((n, i) => `${n}="${escapeLabelValue(values[i]!)}"`).join(",")}}`;
}

interface Renderable {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  render(): Promise<string>;
}

abstract class Metric<L extends string> implements Renderable {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: "counter" | "gauge" | "histogram";
  protected readonly maxSeries: number;

  constructor(o: MetricOptions<L>, maxSeries: number) {
    if (!METRIC_NAME.test(o.name)) throw new Error(`bad metric name ${o.name}`);
    const labelNames = o.labelNames ?? [];
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith("__")) throw new Error(`${o.name}: bad label name ${l}`);
    }
    if (new Set(labelNames).size !== labelNames.length) throw new Error(`${o.name}: label named twice`);
    this.name = o.name;
    this.help = o.help;
    this.labelNames = labelNames;
    this.maxSeries = maxSeries;
  }

  /** The label values in label-name order; throws on a missing or unknown label (a programming error). */
  protected values(labels: Labels<L> | undefined): string[] {
    const given = (labels ?? {}) as Record<string, string>;
    const keys = Object.keys(given);
    if (keys.length !== this.labelNames.length || keys.some((k) => !this.labelNames.includes(k as L))) {
      throw new Error(`${this.name}: labels must be exactly [${this.labelNames.join(", ")}]`);
    }
    return this.labelNames.map((n) => String(given[n]));
  }

  protected header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  abstract render(): Promise<string>;
}

/** A map from label values to state, capped at `max` entries. */
class Series<T> {
  private readonly map = new Map<string, { values: string[]; state: T }>();

  constructor(
    private readonly max: number,
    private readonly fresh: () => T,
  ) {}

  /** The state for these label values, created if there is room; undefined past the cap. */
  get(values: string[]): T | undefined {
    const key = JSON.stringify(values);
    let entry = this.map.get(key);
    if (!entry) {
      if (this.map.size >= this.max) return undefined;
      entry = { values, state: this.fresh() };
      this.map.set(key, entry);
    }
    return entry.state;
  }

  /** The state for these label values if the series exists. */
  peek(values: string[]): T | undefined {
    return this.map.get(JSON.stringify(values))?.state;
  }

  entries(): { values: string[]; state: T }[] {
    return [...this.map.values()];
  }
}

export class Counter<L extends string = never> extends Metric<L> {
  readonly type = "counter";
  private readonly series: Series<{ value: number }>;

  constructor(o: MetricOptions<L>, maxSeries = DEFAULT_MAX_SERIES) {
    super(o, maxSeries);
    this.series = new Series(maxSeries, () => ({ value: 0 }));
  }

  /** Adds n (default 1); n = 0 makes the series appear at 0. A counter never goes down. */
  inc(labels?: Labels<L>, n = 1): void {
    if (!(n >= 0) || !Number.isFinite(n)) throw new Error(`${this.name}: a counter only goes up (got ${n})`);
    const s = this.series.get(this.values(labels));
    if (s) s.value += n;
  }

  /** The current value of one series (0 when never counted): for tests and derived values. */
  get(labels?: Labels<L>): number {
    return this.series.peek(this.values(labels))?.value ?? 0;
  }

  async render(): Promise<string> {
    let out = this.header();
    for (const { values, state } of this.series.entries()) {
      out += `${this.name}${labelText(this.labelNames, values)} ${formatValue(state.value)}\n`;
    }
    return out;
  }
}

export interface GaugeOptions<L extends string> extends MetricOptions<L> {
  /** Evaluated at every scrape instead of set/inc/dec values. */
  collect?: () => Collected<L> | Promise<Collected<L>>;
}

export class Gauge<L extends string = never> extends Metric<L> {
  readonly type = "gauge";
  private readonly series: Series<{ value: number }>;
  private readonly collect: GaugeOptions<L>["collect"];

  constructor(o: GaugeOptions<L>, maxSeries = DEFAULT_MAX_SERIES) {
    super(o, maxSeries);
    this.series = new Series(maxSeries, () => ({ value: 0 }));
    this.collect = o.collect;
  }

  set(labels: Labels<L> | undefined, value: number): void {
    const s = this.series.get(this.values(labels));
    if (s) s.value = value;
  }

  inc(labels?: Labels<L>, n = 1): void {
    const s = this.series.get(this.values(labels));
    if (s) s.value += n;
  }

  dec(labels?: Labels<L>, n = 1): void {
    this.inc(labels, -n);
  }

  async render(): Promise<string> {
    let out = this.header();
    let samples: { values: string[]; value: number }[];
    if (this.collect) {
      const got = await this.collect();
      samples =
        typeof got === "number"
          ? [{ values: this.values(undefined), value: got }]
          : got.slice(0, this.maxSeries).map((s) => ({ values: this.values(s.labels), value: s.value }));
    } else {
      samples = this.series.entries().map((e) => ({ values: e.values, value: e.state.value }));
    }
    for (const s of samples)
      out += `${this.name}${labelText(this.labelNames, s.values)} ${formatValue(s.value)}\n`;
    return out;
  }
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, increasing; +Inf is added. */
  buckets: readonly number[];
}

interface HistogramState {
  /** Per bucket, not cumulative; one more slot for +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = never> extends Metric<L> {
  readonly type = "histogram";
  readonly buckets: readonly number[];
  private readonly series: Series<HistogramState>;

  constructor(o: HistogramOptions<L>, maxSeries = DEFAULT_MAX_SERIES) {
    super(o, maxSeries);
    if ((o.labelNames ?? []).includes("le" as L)) throw new Error(`${o.name}: "le" is the bucket label`);
    const buckets = o.buckets.filter((b) => b !== Number.POSITIVE_INFINITY);
    if (
      buckets.length === 0 ||
      buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]!))
    ) {
      throw new Error(`${o.name}: buckets must be finite and increasing`);
    }
    this.buckets = buckets;
    this.series = new Series(maxSeries, () => ({
      counts: new Array(buckets.length + 1).fill(0),
      sum: 0,
      count: 0,
    }));
  }

  observe(labels: Labels<L> | undefined, value: number): void {
    if (Number.isNaN(value)) return;
    const s = this.series.get(this.values(labels));
    if (!s) return;
    let i = this.buckets.findIndex((b) => value <= b);
    if (i < 0) i = this.buckets.length;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** Makes the series appear with zero counts before its first observation. */
  init(labels?: Labels<L>): void {
    this.series.get(this.values(labels));
  }

  async render(): Promise<string> {
    let out = this.header();
    for (const { values, state } of this.series.entries()) {
      let cumulative = 0;
      const bounds = [...this.buckets.map(formatValue), "+Inf"];
      for (const [i, le] of bounds.entries()) {
        cumulative += state.counts[i]!;
        out += `${this.name}_bucket${labelText([...this.labelNames, "le"], [...values, le])} ${cumulative}\n`;
      }
      const plain = labelText(this.labelNames, values);
      out += `${this.name}_sum${plain} ${formatValue(state.sum)}\n`;
      out += `${this.name}_count${plain} ${state.count}\n`;
    }
    return out;
  }
}

export interface RegistryOptions {
  /** Told when a gauge's collect callback fails; that gauge is rendered without samples. */
  onCollectError?(name: string, err: unknown): void;
  maxSeries?: number;
}

export class Registry {
  private readonly metrics = new Map<string, Renderable>();
  private readonly maxSeries: number;

  constructor(private readonly o: RegistryOptions = {}) {
    this.maxSeries = o.maxSeries ?? DEFAULT_MAX_SERIES;
  }

  counter<L extends string = never>(o: MetricOptions<L>): Counter<L> {
    return this.add(new Counter(o, this.maxSeries));
  }

  gauge<L extends string = never>(o: GaugeOptions<L>): Gauge<L> {
    return this.add(new Gauge(o, this.maxSeries));
  }

  histogram<L extends string = never>(o: HistogramOptions<L>): Histogram<L> {
    return this.add(new Histogram(o, this.maxSeries));
  }

  private add<M extends Renderable>(m: M): M {
    // A histogram also owns name_bucket, name_sum and name_count.
    const taken = (n: string) =>
      this.metrics.has(n) ||
      [...this.metrics.values()].some(
        (x) => x.type === "histogram" && [`${x.name}_bucket`, `${x.name}_sum`, `${x.name}_count`].includes(n),
      );
    if (taken(m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.metrics.set(m.name, m);
    return m;
  }

  /** Every metric in registration order, in the text exposition format 0.0.4. */
  async render(): Promise<string> {
    const parts = await Promise.all(
      [...this.metrics.values()].map(async (m) => {
        try {
          return await m.render();
        } catch (err) {
          this.o.onCollectError?.(m.name, err);
          return `# HELP ${m.name} ${escapeHelp(m.help)}\n# TYPE ${m.name} ${m.type}\n`;
        }
      }),
    );
    return parts.join("");
  }
}
