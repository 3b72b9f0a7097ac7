// Regression cases kept as files (as chasquid's testdata/): a new case is a new file pair in
// test/data/<check>/, NAME.eml and what is expected of it, and needs no code.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stripForgedAuthResults } from "../../src/mail/authcheck.ts";
import { readDeliveryReport } from "../../src/mail/delivery-report.ts";
import { splitFields } from "../../src/mail/headers.ts";
import { fixUpSubmission } from "../../src/mail/submission.ts";

const DATA = join(import.meta.dir, "../data");

function cases(dir: string): [string, Uint8Array][] {
  return readdirSync(join(DATA, dir))
    .filter((f) => f.endsWith(".eml"))
    .sort()
    .map((f) => [f.slice(0, -4), new Uint8Array(readFileSync(join(DATA, dir, f)))]);
}

const expected = (dir: string, name: string, ext: string) =>
  readFileSync(join(DATA, dir, `${name}${ext}`), "utf8");

describe("test/data/from: the From and Sender a submitter (u@example.test, *@example.test) may use", () => {
  test.each(cases("from"))("%s", (name, raw) => {
    const want = JSON.parse(expected("from", name, ".expect.json"));
    const got = fixUpSubmission(raw, ["u@example.test", "*@example.test"], "mx.example.test", new Date(0));
    expect(got.ok ? { ok: true } : got).toEqual(want);
  });
});

describe("test/data/auth-results: Authentication-Results left after stripping mx.example.com's", () => {
  test.each(cases("auth-results"))("%s", (name, raw) => {
    const left = splitFields(stripForgedAuthResults(raw, "mx.example.com"))
      .filter((f) => f.key === "authentication-results")
      .map((f) => `${f.line.toString("latin1")}\n`)
      .join("");
    expect(left).toBe(expected("auth-results", name, ".expect.txt"));
  });
});

describe("test/data/delivery-reports: what a delivery report that came back says (null: not one)", () => {
  test.each(cases("delivery-reports"))("%s", async (name, raw) => {
    const want = JSON.parse(expected("delivery-reports", name, ".expect.json"));
    expect((await readDeliveryReport(raw)) ?? null).toEqual(want);
  });
});
