import { describe, expect, test } from "bun:test";
import { RateWindow } from "../../src/smtp/rate-window.ts";

describe("RateWindow", () => {
  test("up to the limit within the window, per key; free again as the oldest leaves the window", () => {
    const w = new RateWindow(3, 60_000);
    expect([w.take("a", 0), w.take("a", 10_000), w.take("a", 20_000)]).toEqual([true, true, true]);
    expect(w.take("a", 30_000)).toBe(false);
    expect(w.take("b", 30_000)).toBe(true);
    expect(w.freeAt("a")).toBe(60_000);
    expect(w.take("a", 59_999)).toBe(false);
    expect(w.take("a", 60_001)).toBe(true);
    expect(w.take("a", 60_002)).toBe(false);
  });

  test("a refusal is not counted: a client that keeps trying is free once its window has passed", () => {
    const w = new RateWindow(1, 1000);
    expect(w.take("a", 0)).toBe(true);
    for (let t = 1; t < 1000; t += 100) expect(w.take("a", t)).toBe(false);
    expect(w.take("a", 1001)).toBe(true);
  });
});
