import { describe, expect, test } from "bun:test";
import { srsForward, srsReverse } from "../../src/mail/srs.ts";

const SECRET = "s3cret";
const NOW = new Date("2026-11-29T08:00:00Z");

describe("SRS", () => {
  test("forward rewrites into our domain and reverse gives the original back", () => {
    const srs = srsForward("Alice@Sender.test", "example.test", SECRET, NOW);
    expect(srs).toMatch(/^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=Sender\.test=Alice@example\.test$/);
    expect(srsReverse(srs, SECRET)).toBe("Alice@Sender.test");
    expect(srsReverse(srs.toLowerCase(), SECRET)).toBe("alice@sender.test"); // case may be lost on the way back
  });

  test("the null sender stays null", () => {
    expect(srsForward("", "example.test", SECRET, NOW)).toBe("");
  });

  test("an address older than 21 days does not reverse", () => {
    const srs = srsForward("a@b.test", "example.test", SECRET, NOW);
    const later = (days: number) => new Date(NOW.getTime() + days * 86_400_000);
    expect(srsReverse(srs, SECRET, later(21))).toBe("a@b.test");
    expect(srsReverse(srs, SECRET, later(22))).toBeUndefined();
    expect(srsReverse(srs, SECRET, later(1024 + 3))).toBe("a@b.test"); // the 10-bit day wraps
  });

  test("a forged or foreign address does not reverse", () => {
    const srs = srsForward("a@b.test", "example.test", SECRET, NOW);
    expect(srsReverse(srs, "other secret")).toBeUndefined();
    expect(srsReverse(srs.replace("=b.test=", "=evil.test="), SECRET)).toBeUndefined();
    expect(srsReverse("bob@example.test", SECRET)).toBeUndefined();
  });
});
