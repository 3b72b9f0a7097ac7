// The dispatcher's rules without a database: concurrency, per-destination slow start, the byte
// budget and its fairness, oldest first.
import { describe, expect, test } from "bun:test";
import type { ClaimedDelivery } from "../../src/queue/claim.ts";
import { Dispatcher, type DispatchLimits, type Group } from "../../src/queue/dispatcher.ts";

const LIMITS: DispatchLimits = {
  concurrency: 10,
  perDestination: 4,
  initialPerDestination: 2,
  jobsPerGroup: 3,
  maxGroupBytes: 1000,
  maxBytesInFlight: 2000,
};

let nextId = 1;
function delivery(messageId = `m${nextId}`, size = 100): ClaimedDelivery {
  return {
    id: nextId++,
    messageId,
    rcpt: "r@example.test",
    orcpt: null,
    notify: null,
    target: { kind: "mx" },
    attempts: 0,
    createdAt: new Date(0),
    warnedAt: null,
    size,
  };
}

function withWaiting(limits: Partial<DispatchLimits>, waiting: Record<string, number[]>): Dispatcher {
  const d = new Dispatcher({ ...LIMITS, ...limits });
  for (const [key, sizes] of Object.entries(waiting))
    for (const size of sizes) d.add(key, { delivery: delivery(undefined, size) });
  return d;
}

const keys = (groups: Group[]) => groups.map((g) => g.key);

describe("Dispatcher", () => {
  test("groups of jobsPerGroup, oldest first, up to the destination's starting limit", () => {
    const d = withWaiting({}, { a: [1, 1, 1, 1, 1, 1, 1, 1] });
    const groups = d.startable();
    expect(groups.map((g) => g.jobs.length)).toEqual([3, 3]); // initialPerDestination = 2
    const ids = groups.flatMap((g) => g.jobs.map((j) => j.delivery.id));
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(d.waitingCount).toBe(2);
    expect(d.startable()).toEqual([]); // at its limit until one ends
    d.finished(groups[0]!);
    expect(d.startable().map((g) => g.jobs.length)).toEqual([2]);
  });

  test("slow start: one more per round that reached someone, up to perDestination; halved after one that reached no one", () => {
    const d = withWaiting({ jobsPerGroup: 1 }, { a: Array(20).fill(1) });
    const first = d.startable();
    expect(first).toHaveLength(2);
    d.reached(first[0]!, true);
    d.reached(first[1]!, true);
    d.reached(first[1]!, true); // capped at perDestination = 4
    expect(d.startable()).toHaveLength(2); // 4 running now
    for (const g of first) d.finished(g);
    expect(d.startable()).toHaveLength(2);
    d.reached(first[0]!, false); // 4 → 2, and 4 are running: none may start
    for (const g of first) d.finished(g);
    expect(d.startable()).toHaveLength(0);
  });

  test("the concurrency caps all destinations together", () => {
    const d = withWaiting({ concurrency: 3, jobsPerGroup: 1 }, { a: [1, 1, 1], b: [1, 1, 1] });
    expect(keys(d.startable())).toEqual(["a", "a", "b"]);
  });

  test("a message counts once in a group's bytes, however many of its recipients ride along", () => {
    const d = new Dispatcher({ ...LIMITS, jobsPerGroup: 10, initialPerDestination: 1 });
    d.add("a", { delivery: delivery("one", 400) });
    d.add("a", { delivery: delivery("one", 400) });
    d.add("a", { delivery: delivery("two", 400) });
    d.add("a", { delivery: delivery("three", 400) }); // 1200 > maxGroupBytes: next group
    const [group] = d.startable();
    expect(group!.jobs.map((j) => j.delivery.messageId)).toEqual(["one", "one", "two"]);
    expect(group!.bytes).toBe(800);
  });

  test("a message over the group limit goes alone", () => {
    const d = withWaiting({ initialPerDestination: 1, maxBytesInFlight: 10_000 }, { a: [1500, 10] });
    expect(d.startable().map((g) => [g.jobs.length, g.bytes])).toEqual([[1, 1500]]);
  });

  test("a group over the byte budget waits, blocks smaller ones behind it, then goes first", () => {
    const d = withWaiting(
      { jobsPerGroup: 1, initialPerDestination: 4 },
      { big: [1500, 1500], small: [100, 100] },
    );
    const first = d.startable();
    // big's first group (1500) runs; its second does not fit (3000 > 2000) and stops everything
    expect(keys(first)).toEqual(["big"]);
    d.add("late", { delivery: delivery(undefined, 10) });
    expect(d.startable()).toEqual([]); // the blocked group keeps its turn while it cannot fit
    d.finished(first[0]!);
    const next = d.startable();
    // it goes first, then the others behind it while the budget lasts (1500 + 210 <= 2000)
    expect(keys(next)).toEqual(["big", "small", "small", "late"]);
  });

  test("one group always may run, however big", () => {
    const d = withWaiting({ maxBytesInFlight: 100 }, { a: [5000] });
    expect(d.startable().map((g) => g.bytes)).toEqual([5000]);
  });

  test("deliveries whose lease was lost are dropped; nothing is left of an idle destination", () => {
    const d = new Dispatcher(LIMITS);
    const lost = delivery(undefined, 1);
    d.add("a", { delivery: lost });
    d.add("b", { delivery: delivery(undefined, 1) });
    expect(d.dropLost(new Set([lost.id]))).toBe(1);
    expect(d.waitingCount).toBe(1);
    expect(keys(d.startable())).toEqual(["b"]);
  });

  test("a stop takes everything still waiting", () => {
    const d = withWaiting({ concurrency: 1 }, { a: [1, 1, 1, 1], b: [1] });
    const running = d.startable();
    expect(running).toHaveLength(1);
    expect(d.takeAllWaiting()).toHaveLength(2);
    expect(d.waitingCount).toBe(0);
    d.finished(running[0]!); // a group still running may end after the stop
  });
});
