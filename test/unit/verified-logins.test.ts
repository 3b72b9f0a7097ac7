import { expect, test } from "bun:test";
import { VerifiedLogins } from "../../src/auth/verified-logins.ts";

function logins(ttlMs = 1000, max = 3) {
  let t = 0;
  const cache = new VerifiedLogins(ttlMs, max, () => t);
  return { cache, advance: (ms: number) => (t += ms) };
}

test("a remembered login holds for the same password and stored hash only", () => {
  const { cache } = logins();
  expect(cache.holds("a@x.test", "pw", "H1")).toBe(false);
  cache.remember("a@x.test", "pw", "H1");
  expect(cache.holds("a@x.test", "pw", "H1")).toBe(true);
  expect(cache.holds("a@x.test", "other", "H1")).toBe(false);
  expect(cache.holds("b@x.test", "pw", "H1")).toBe(false);
});

test("a changed stored hash (password changed, user re-added) drops the entry", () => {
  const { cache } = logins();
  cache.remember("a@x.test", "pw", "H1");
  expect(cache.holds("a@x.test", "pw", "H2")).toBe(false);
  expect(cache.holds("a@x.test", "pw", "H1")).toBe(false);
});

test("an entry lapses after its TTL", () => {
  const { cache, advance } = logins(1000);
  cache.remember("a@x.test", "pw", "H1");
  advance(999);
  expect(cache.holds("a@x.test", "pw", "H1")).toBe(true);
  advance(1);
  expect(cache.holds("a@x.test", "pw", "H1")).toBe(false);
});

test("at its size the least recently verified login is dropped first", () => {
  const { cache } = logins(1000, 3);
  cache.remember("a", "pw", "H");
  cache.remember("b", "pw", "H");
  cache.remember("c", "pw", "H");
  cache.remember("a", "pw", "H"); // verified again: now the newest
  cache.remember("d", "pw", "H");
  expect(["a", "b", "c", "d"].map((l) => cache.holds(l, "pw", "H"))).toEqual([true, false, true, true]);
});
