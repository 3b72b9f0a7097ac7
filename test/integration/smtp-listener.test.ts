// The listener's own duties, with a stub backend and no database: TLS handshake timeouts
// (implicit and after STARTTLS) and the connection slots they hold.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";
import { loadTlsMaterial, serverTlsOptions } from "../../src/net/tls.ts";
import { ConnectionCounter, listenSmtp, type SmtpListener } from "../../src/smtp/listener.ts";
import type { PortKind, SessionBackend, SessionPolicy } from "../../src/smtp/session.ts";
import { tempDir } from "../helpers/cli.ts";
import { ehloClient, SmtpClient } from "../helpers/smtp-client.ts";

const backend: SessionBackend = {
  authenticate: async () => ({ kind: "wrong" }),
  checkSender: async () => undefined,
  checkRecipient: async () => ({ ok: true, target: { kind: "mailbox" } }),
  accept: async () => {},
};

function policyFor(kind: PortKind): SessionPolicy {
  return {
    port: kind,
    hostname: "mx.example.test",
    maxMessageBytes: 1_000_000,
    maxRecipients: 10,
    tlsAvailable: true,
    maxErrors: 10,
    maxAuthFailures: 3,
    authFailureDelayMs: () => 0,
  };
}

describe("SMTP listener timeouts", () => {
  const counter = new ConnectionCounter({ total: 100, perIp: 100 });
  const listeners = {} as Record<PortKind, SmtpListener>;

  beforeAll(async () => {
    const tls = await loadTlsMaterial({
      dataDir: tempDir(),
      hostname: "mx.example.test",
      tlsCert: undefined,
      tlsKey: undefined,
    });
    const serverTls = serverTlsOptions(tls);
    for (const kind of ["submission", "submissions"] as const) {
      const policy = policyFor(kind);
      listeners[kind] = listenSmtp({
        hostname: "127.0.0.1",
        port: 0,
        kind,
        policy,
        backend,
        clock: { now: () => Date.now(), sleep: (ms) => Bun.sleep(ms), newId: () => "id" },
        tls: () => serverTls,
        counter,
        log: createLogger("error"),
        handshakeTimeoutSeconds: 1,
      });
    }
  });
  afterAll(async () => {
    for (const l of Object.values(listeners)) await l.stop(0);
  });

  test("a wait longer than Bun's longest timer is re-armed until its own deadline", async () => {
    // Timers capped at 1 s, handshake deadline 4 s: a capped timer alone would cut at about 1 s.
    const tls = await loadTlsMaterial({
      dataDir: tempDir(),
      hostname: "h.test",
      tlsCert: undefined,
      tlsKey: undefined,
    });
    const listener = listenSmtp({
      hostname: "127.0.0.1",
      port: 0,
      kind: "submissions",
      policy: { ...policyFor("submissions") },
      backend,
      clock: { now: () => Date.now(), sleep: (ms) => Bun.sleep(ms), newId: () => "id" },
      tls: () => serverTlsOptions(tls),
      counter: new ConnectionCounter({ total: 10, perIp: 10 }),
      log: createLogger("error"),
      handshakeTimeoutSeconds: 4,
      maxTimerSeconds: 1,
    });
    try {
      const silent = await SmtpClient.connect(listener.port);
      const started = Date.now();
      expect(await silent.waitClosed(12000)).toBe(true);
      expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
      silent.destroy();
    } finally {
      await listener.stop(0);
    }
  }, 20000);

  test("a client silent after STARTTLS, or stuck mid-handshake, is cut off and its slot freed", async () => {
    const silent = await ehloClient(listeners.submission.port);
    const partial = await ehloClient(listeners.submission.port);
    for (const { client } of [silent, partial]) expect((await client.command("STARTTLS")).code).toBe(220);
    // A TLS record header announcing 8 KiB that never come.
    await partial.client.write("\x16\x03\x01\x20\x00\x01\x00");
    const implicit = await SmtpClient.connect(listeners.submissions.port);
    const started = Date.now();
    // Bun checks socket timeouts on a coarse tick (seconds), so "1 s" ends within a few.
    const closed = await Promise.all(
      [silent.client, partial.client, implicit].map((c) => c.waitClosed(9000)),
    );
    expect(closed).toEqual([true, true, true]);
    expect(Date.now() - started).toBeLessThan(9000);
    for (const c of [silent.client, partial.client, implicit]) c.destroy();
    await Bun.sleep(100);
    expect(counter.open).toBe(0);
  }, 15000);
});
