import { describe, expect, test } from "bun:test";
import { targetLabel } from "../../src/metrics/postern.ts";
import { readStoredTarget } from "../../src/queue/claim.ts";

describe("metric labels", () => {
  test("target kinds never carry the host, URL or address", () => {
    const label = (text: string) => targetLabel(readStoredTarget(text));
    expect(label("mx")).toBe("mx");
    expect(label("mailbox")).toBe("mailbox");
    expect(label("relay:10.0.0.1:2525")).toBe("relay");
    expect(label("webhook:https://example.com/hook")).toBe("webhook");
    expect(label("forward:bob@example.org")).toBe("forward");
    expect(label("something:else")).toBe("other");
  });
});
