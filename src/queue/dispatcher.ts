// Which group of claimed deliveries starts next. Pure (no database, no clock, no sockets): the
// scheduler adds what it claimed, starts the groups this hands out, and says when each ended.
// The rules: at most `concurrency` groups in flight, at most a destination's limit per
// destination (reached by slow start), and message bytes in flight within a budget.
import type { ClaimedDelivery } from "./claim.ts";
import { takeGroup } from "./grouping.ts";

export interface DispatchLimits {
  /** Groups in flight at once, all destinations. */
  concurrency: number;
  /** Groups in flight per destination, reached by slow start (Postfix: 20, starting at 5). */
  perDestination: number;
  initialPerDestination: number;
  /** Jobs in one group (one courier call, one connection). */
  jobsPerGroup: number;
  /** Message bytes one group carries at most (a bigger message goes alone). */
  maxGroupBytes: number;
  /** Message bytes of all groups in flight together. */
  maxBytesInFlight: number;
}

/** A claimed delivery waiting for its group; its message body is not loaded yet. */
export interface Waiting {
  delivery: ClaimedDelivery;
}

interface Destination {
  waiting: Waiting[];
  running: number;
  limit: number;
}

export interface Group {
  /** The destination (`destinationOf`). */
  key: string;
  /** Oldest first, as claimed. */
  jobs: Waiting[];
  /** Message bytes, each message counted once. */
  bytes: number;
  readonly destination: Destination;
}

export class Dispatcher {
  private readonly destinations = new Map<string, Destination>();
  private inFlight = 0;
  private bytesInFlight = 0;
  /** A destination whose next group waits for room in the byte budget. */
  private blocked: string | undefined;

  constructor(private readonly limits: DispatchLimits) {}

  add(key: string, waiting: Waiting): void {
    let dest = this.destinations.get(key);
    if (!dest) {
      dest = { waiting: [], running: 0, limit: this.limits.initialPerDestination };
      this.destinations.set(key, dest);
    }
    dest.waiting.push(waiting);
  }

  get waitingCount(): number {
    let n = 0;
    for (const d of this.destinations.values()) n += d.waiting.length;
    return n;
  }

  /**
   * The groups that may start now; each counts as running until `finished`. The destination
   * whose group did not fit the budget last time gets the first group, so that freed bytes go
   * to it and not to smaller groups that would keep it waiting for good; then it goes to the
   * back of the line, so that it cannot keep the others waiting either.
   */
  startable(): Group[] {
    const groups: Group[] = [];
    const first = this.blocked;
    this.blocked = undefined;
    const firstDest = first === undefined ? undefined : this.destinations.get(first);
    if (first !== undefined && firstDest) {
      if (this.inFlight >= this.limits.concurrency) {
        this.blocked = first; // nothing can start now: the turn stays
        return groups;
      }
      // At its own connection limit it has no turn: the next group that does not fit takes it.
      if (firstDest.running < firstDest.limit) {
        if (!this.take(first, firstDest, 1, groups)) return groups;
        this.destinations.delete(first);
        this.destinations.set(first, firstDest);
      }
    }
    for (const [key, dest] of this.destinations) {
      if (!this.take(key, dest, Number.POSITIVE_INFINITY, groups)) return groups;
    }
    return groups;
  }

  /**
   * Up to `most` groups of one destination, within its limit, the concurrency and the byte
   * budget. False when a group did not fit the budget: nothing more starts until it can (one
   * group always may run, however big), and it is remembered to go first.
   */
  private take(key: string, dest: Destination, most: number, into: Group[]): boolean {
    for (let started = 0; started < most; started++) {
      if (dest.waiting.length === 0 || dest.running >= dest.limit || this.inFlight >= this.limits.concurrency)
        break;
      const { count, bytes } = takeGroup(dest.waiting, this.limits.jobsPerGroup, this.limits.maxGroupBytes);
      if (this.bytesInFlight > 0 && this.bytesInFlight + bytes > this.limits.maxBytesInFlight) {
        this.blocked ??= key;
        return false;
      }
      dest.running++;
      this.inFlight++;
      this.bytesInFlight += bytes;
      into.push({ key, jobs: dest.waiting.splice(0, count), bytes, destination: dest });
    }
    return true;
  }

  /** Slow start: a round that reached someone opens one more connection; one that reached no one halves them. */
  reached(group: Group, someone: boolean): void {
    const dest = group.destination;
    dest.limit = someone
      ? Math.min(dest.limit + 1, this.limits.perDestination)
      : Math.max(1, Math.floor(dest.limit / 2));
  }

  finished(group: Group): void {
    const dest = group.destination;
    dest.running--;
    this.inFlight--;
    this.bytesInFlight -= group.bytes;
    if (dest.running === 0 && dest.waiting.length === 0 && this.destinations.get(group.key) === dest)
      this.destinations.delete(group.key);
  }

  /** Drops waiting deliveries whose lease was lost (another holder delivers them); how many. */
  dropLost(lost: ReadonlySet<number>): number {
    let dropped = 0;
    for (const [key, dest] of this.destinations) {
      const kept = dest.waiting.filter((w) => !lost.has(w.delivery.id));
      dropped += dest.waiting.length - kept.length;
      dest.waiting = kept;
      if (dest.running === 0 && dest.waiting.length === 0) this.destinations.delete(key);
    }
    return dropped;
  }

  /** Everything still waiting, taken out (a stop gives their leases back). */
  takeAllWaiting(): Waiting[] {
    const all = [...this.destinations.values()].flatMap((d) => d.waiting);
    this.destinations.clear();
    return all;
  }
}
