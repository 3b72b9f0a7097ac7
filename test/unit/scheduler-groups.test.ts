import { describe, expect, test } from "bun:test";
import { groupSize } from "../../src/queue/scheduler.ts";

const sized = (...sizes: number[]) => sizes.map((size) => ({ size }));

describe("groupSize", () => {
  test("takes up to the job limit when the bytes allow", () => {
    expect(groupSize(sized(10, 10, 10, 10), 3, 1000)).toBe(3);
    expect(groupSize(sized(10, 10), 3, 1000)).toBe(2);
  });

  test("stops before the message that would pass the byte limit", () => {
    expect(groupSize(sized(400, 400, 400), 10, 1000)).toBe(2);
    expect(groupSize(sized(400, 600, 1), 10, 1000)).toBe(2);
    expect(groupSize(sized(400, 601, 1), 10, 1000)).toBe(1);
  });

  test("a message bigger than the limit still goes, alone", () => {
    expect(groupSize(sized(5000, 10), 10, 1000)).toBe(1);
  });

  test("nothing waiting, nothing taken", () => {
    expect(groupSize([], 10, 1000)).toBe(0);
  });
});
