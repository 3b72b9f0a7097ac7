// How many times each key (a client IP) did something within the last window, on this node:
// a sliding window of timestamps, swept now and then so quiet keys do not stay in memory.

export class RateWindow {
  private readonly seen = new Map<string, number[]>();
  private lastSweep = 0;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Counts one for `key` and returns true, or returns false (counting nothing) when it is at the limit. */
  take(key: string, now = Date.now()): boolean {
    if (now - this.lastSweep > this.windowMs) this.sweep(now);
    const since = now - this.windowMs;
    const times = (this.seen.get(key) ?? []).filter((t) => t > since);
    if (times.length >= this.limit) {
      this.seen.set(key, times);
      return false;
    }
    times.push(now);
    this.seen.set(key, times);
    return true;
  }

  /** When `key` may go on again (ms since epoch), once at its limit. */
  freeAt(key: string): number | undefined {
    const times = this.seen.get(key);
    return times && times.length >= this.limit
      ? times[times.length - this.limit]! + this.windowMs
      : undefined;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [key, times] of this.seen) if (times.at(-1)! <= now - this.windowMs) this.seen.delete(key);
  }
}
