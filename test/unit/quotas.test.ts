import { describe, expect, test } from "bun:test";
import { nextHour, quotaOf } from "../../src/queue/quotas.ts";

describe("send quotas", () => {
  test("a sender's own limit, else the default; 0 means none", () => {
    expect(quotaOf("user:a@x.test", 5, 100)).toEqual({ subject: "user:a@x.test", limit: 5 });
    expect(quotaOf("user:a@x.test", null, 100)).toEqual({ subject: "user:a@x.test", limit: 100 });
    expect(quotaOf("user:a@x.test", null, 0)).toBeUndefined();
    expect(quotaOf("key:shop", 0, 100)).toBeUndefined();
  });

  test("a used-up quota opens at the next full hour", () => {
    expect(nextHour(new Date("2026-12-03T07:32:10Z")).toISOString()).toBe("2026-12-03T08:00:00.000Z");
    expect(nextHour(new Date("2026-12-03T23:59:59.999Z")).toISOString()).toBe("2026-12-04T00:00:00.000Z");
    expect(nextHour(new Date("2026-12-03T08:00:00Z")).toISOString()).toBe("2026-12-03T09:00:00.000Z");
  });
});
