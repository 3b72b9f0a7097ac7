import { describe, expect, test } from "bun:test";
import { takeGroup } from "../../src/queue/grouping.ts";

/** One waiting delivery per [message id, size]. */
const waiting = (...rows: [string, number][]) =>
  rows.map(([messageId, size]) => ({ delivery: { messageId, size } }));

describe("takeGroup", () => {
  test("takes up to the job limit when the bytes allow", () => {
    expect(takeGroup(waiting(["a", 10], ["b", 10], ["c", 10], ["d", 10]), 3, 1000)).toEqual({
      count: 3,
      bytes: 30,
    });
    expect(takeGroup(waiting(["a", 10], ["b", 10]), 3, 1000)).toEqual({ count: 2, bytes: 20 });
  });

  test("stops before the message that would pass the byte limit", () => {
    expect(takeGroup(waiting(["a", 400], ["b", 400], ["c", 400]), 10, 1000).count).toBe(2);
    expect(takeGroup(waiting(["a", 400], ["b", 600], ["c", 1]), 10, 1000).count).toBe(2);
    expect(takeGroup(waiting(["a", 400], ["b", 601], ["c", 1]), 10, 1000).count).toBe(1);
  });

  test("a message counts once for all its recipients", () => {
    expect(takeGroup(waiting(["big", 700], ["big", 700], ["big", 700]), 10, 1000)).toEqual({
      count: 3,
      bytes: 700,
    });
    expect(takeGroup(waiting(["a", 400], ["a", 400], ["b", 700]), 10, 1000)).toEqual({
      count: 2,
      bytes: 400,
    });
  });

  test("a message bigger than the limit still goes, alone", () => {
    expect(takeGroup(waiting(["a", 5000], ["b", 10]), 10, 1000)).toEqual({ count: 1, bytes: 5000 });
  });

  test("nothing waiting, nothing taken", () => {
    expect(takeGroup([], 10, 1000)).toEqual({ count: 0, bytes: 0 });
  });
});
