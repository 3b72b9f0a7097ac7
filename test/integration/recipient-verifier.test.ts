// Recipient callouts against an inner server that is not ours (aiosmtpd with a handler that
// refuses unknown local parts): what it says is believed, remembered, and asked once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RecipientVerifier } from "../../src/delivery/recipient-verifier.ts";
import { type Aiosmtpd, haveAiosmtpd, startAiosmtpd } from "../helpers/aiosmtpd.ts";
import { freePort } from "../helpers/serve.ts";

describe.skipIf(!haveAiosmtpd)("recipient verification at an inner server", () => {
  let inner: Aiosmtpd;
  let now = 1_000_000;
  const verifier = new RecipientVerifier({ helo: "mx.example.test", now: () => now });
  const server = () => ({ host: "127.0.0.1", port: inner.port, lmtp: false });

  beforeAll(async () => {
    inner = await startAiosmtpd(undefined, { refuseUnknown: true });
  });
  afterAll(async () => {
    await inner?.stop();
  });

  test("a recipient the inner server knows is accepted; one it refuses carries its reply", async () => {
    expect(await verifier.verify(server(), "known@example.test")).toEqual({ kind: "accepted" });
    const refused = await verifier.verify(server(), "unknown-1@example.test");
    expect(refused.kind).toBe("refused");
    expect(refused.kind === "refused" && refused.reply).toMatchObject({ code: 550, enhanced: "5.1.1" });
    expect(refused.kind === "refused" && refused.reply.text).toContain("User unknown");
  });

  test("answers are remembered (any case), asked again once they expire; concurrent questions share one probe", async () => {
    const before = inner.rcpts().length;
    expect((await verifier.verify(server(), "UNKNOWN-1@example.test")).kind).toBe("refused");
    expect((await verifier.verify(server(), "known@example.test")).kind).toBe("accepted");
    expect(inner.rcpts().length).toBe(before);
    const both = await Promise.all([
      verifier.verify(server(), "unknown-2@example.test"),
      verifier.verify(server(), "unknown-2@example.test"),
    ]);
    expect(both.map((v) => v.kind)).toEqual(["refused", "refused"]);
    expect(inner.rcpts().filter((a) => a === "unknown-2@example.test")).toHaveLength(1);
    now += 11 * 60_000; // past a refusal's 10 minutes
    expect((await verifier.verify(server(), "unknown-2@example.test")).kind).toBe("refused");
    expect(inner.rcpts().filter((a) => a === "unknown-2@example.test")).toHaveLength(2);
  });

  test("an inner server that says nothing: RCPT waits only the bounded time, once", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const patient = new RecipientVerifier({ helo: "mx.example.test", waitMs: 1000 });
      const down = { host: "127.0.0.1", port: silent.port, lmtp: false };
      const t0 = performance.now();
      expect(await patient.verify(down, "a@example.test")).toEqual({
        kind: "unknown",
        why: "no answer within 1000 ms",
      });
      const first = performance.now() - t0;
      expect(first).toBeGreaterThanOrEqual(990);
      expect(first).toBeLessThan(5000);
      // the same question again, while the probe still waits for a greeting: no second wait
      const t1 = performance.now();
      expect((await patient.verify(down, "a@example.test")).kind).toBe("unknown");
      expect(performance.now() - t1).toBeLessThan(500);
    } finally {
      silent.stop(true);
    }
  });

  test("an inner server that cannot be reached leaves it unknown, and is not asked again at once", async () => {
    const port = await freePort();
    const down = { host: "127.0.0.1", port, lmtp: false };
    const first = await verifier.verify(down, "a@example.test");
    expect(first.kind).toBe("unknown");
    const second = await verifier.verify(down, "b@example.test");
    expect(second).toEqual({ kind: "unknown", why: `127.0.0.1:${port} unreachable` });
  });
});
