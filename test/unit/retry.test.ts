import { describe, expect, test } from "bun:test";
import { nextAttempt, outcomeOfReply, retryDelaySeconds } from "../../src/queue/retry.ts";

const policy = { baseSeconds: 60, maxSeconds: 3600, lifetimeSeconds: 432000 };

describe("retry policy", () => {
  test.each([
    [1, 60],
    [2, 120],
    [3, 240],
    [6, 1920],
    [7, 3600],
    [40, 3600],
  ])("attempt %i without jitter waits %i s", (n, seconds) => {
    expect(retryDelaySeconds(n, policy, () => 0.5)).toBeCloseTo(seconds, 6);
  });

  test("jitter stays within ±20% and never above the cap", () => {
    expect(retryDelaySeconds(1, policy, () => 0)).toBeCloseTo(48, 6);
    expect(retryDelaySeconds(1, policy, () => 0.999999)).toBeCloseTo(72, 3);
    for (let i = 0; i < 1000; i++) {
      const d = retryDelaySeconds(1 + (i % 12), policy);
      expect(d).toBeLessThanOrEqual(3600);
      expect(d).toBeGreaterThanOrEqual(48);
    }
  });

  test.each([
    [250, "delivered"],
    [251, "delivered"],
    [421, "deferred"],
    [451, "deferred"],
    [550, "bounced"],
    [554, "bounced"],
    [undefined, "deferred"],
  ] as const)("reply %p -> %s", (code, outcome) => {
    expect(outcomeOfReply(code)).toBe(outcome);
  });

  test("the next attempt never goes past the lifetime, and past it the delivery expires", () => {
    const queued = new Date("2026-11-01T00:00:00Z");
    const short = { ...policy, lifetimeSeconds: 100 };
    const early = nextAttempt(3, queued, new Date(queued.getTime() + 10_000), short, () => 0.5);
    expect(early).toEqual({ kind: "retry", at: new Date(queued.getTime() + 100_000) });
    expect(nextAttempt(1, queued, new Date(queued.getTime() + 100_000), short)).toEqual({ kind: "expired" });
    const normal = nextAttempt(1, queued, queued, policy, () => 0.5);
    expect(normal).toEqual({ kind: "retry", at: new Date(queued.getTime() + 60_000) });
  });
});
