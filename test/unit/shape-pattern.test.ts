import { describe, expect, test } from "bun:test";
import { formatShapePattern, matchShape, parseShapePattern } from "../../src/delivery/shape-pattern.ts";

describe("shape patterns", () => {
  test.each([
    ["gmail.com", "gmail.com"],
    ["Gmail.COM.", "gmail.com"],
    ["mx:.google.com", "mx:.google.com"],
    ["mx:google.com", "mx:.google.com"],
    ["MX:.Google.Com", "mx:.google.com"],
  ])("%s is stored as %s", (text, stored) => {
    const p = parseShapePattern(text);
    expect(typeof p === "string" ? p : formatShapePattern(p)).toBe(stored);
  });

  test.each(["localhost", "mx:", "mx:.", "gmail..com", "*.gmail.com"])("%s is refused", (text) => {
    expect(typeof parseShapePattern(text)).toBe("string");
  });

  test("a domain pattern wins over an MX suffix; an MX suffix covers every domain hosted there", () => {
    const patterns = ["mx:.google.test", "gmail.test", "mx:.outlook.test"];
    expect(matchShape(patterns, "gmail.test", ["mx1.google.test"])).toBe("gmail.test");
    expect(matchShape(patterns, "Company.test", ["ASPMX.L.Google.Test."])).toBe("mx:.google.test");
    expect(matchShape(patterns, "x.test", ["google.test"])).toBe("mx:.google.test");
    expect(matchShape(patterns, "x.test", ["notgoogle.test"])).toBeUndefined();
    expect(matchShape(patterns, "x.test", ["mx.x.test"])).toBeUndefined();
  });
});
