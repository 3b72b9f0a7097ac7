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
    if (this.entries.size >= this.maxEntries) this.dropOldest();
    this.entries.set(key, { value, expires: this.now() + ttlSeconds * 1000 });
  }

  /**
   * Drops the oldest tenth at once. One at a time, every insert into a full cache walked from the
   * Map's start over the slots of the entries deleted before it (a Map keeps them until it is
   * rebuilt): ~10 µs a set at 10 000 entries, where a cache of many senders is always full.
   */
  private dropOldest(): void {
    let drop = Math.max(1, Math.ceil(this.maxEntries / 10));
    for (const key of this.entries.keys()) {
      if (drop-- === 0) break;
      this.entries.delete(key);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
