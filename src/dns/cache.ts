// A map whose entries expire after their DNS TTL, with a size cap: one message can cause a dozen
// look-ups (SPF includes, DKIM keys, DMARC, MX) and a busy queue asks the same domains again and
// again, but a flood of random names must not grow memory without bound.

export class TtlCache<V> {
  // Map keeps insertion order, so the first key is the oldest entry: the one dropped when full.
  private readonly entries = new Map<string, { value: V; expires: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(key: string): V | undefined {
    return this.getEntry(key)?.value;
  }

  /** The value and when it expires (on the `now` clock), while it lives. */
  getEntry(key: string): { value: V; expires: number } | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Keeps `value` for `ttlSeconds`; a TTL of 0 means "do not cache" (RFC 1035 3.2.1). */
  set(key: string, value: V, ttlSeconds: number): void {
    if (!(ttlSeconds > 0) || this.maxEntries <= 0) return;
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    this.entries.set(key, { value, expires: this.now() + ttlSeconds * 1000 });
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
