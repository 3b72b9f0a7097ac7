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

/** A certificate of our own making for `hostname`, as serve makes when none is configured. */
function selfSignedTls(hostname: string) {
  return loadTlsMaterial({ dataDir: tempDir(), hostname, tlsCert: undefined, tlsKey: undefined });
}

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
    const tls = await selfSignedTls("mx.example.test");
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
    const tls = await selfSignedTls("h.test");
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

describe("bytes kept from the socket", () => {
  // The session keeps the buffers of Bun's data callbacks as they are, unto the commit: this holds
  // only while Bun hands every read a buffer of its own, which these messages would show if not.
  const messages = [0, 1].map((n) =>
    Buffer.from(
      `Subject: ${n}\r\n\r\n${Array.from({ length: 3000 }, (_, i) => `line ${i} of message ${n} ${"x".repeat(90)}`).join("\r\n")}\r\n`,
    ),
  );

  test.each([
    ["plain", false],
    ["after STARTTLS", true],
  ] as const)(
    "%s: messages read in many pieces while a commit waits are stored octet for octet",
    async (_name, starttls) => {
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const stored: Buffer[] = [];
      const tls = await selfSignedTls("mx.example.test");
      const listener = listenSmtp({
        hostname: "127.0.0.1",
        port: 0,
        kind: "smtp",
        policy: policyFor("smtp"),
        backend: {
          ...backend,
          accept: async (_id, _envelope, content) => {
            await gate;
            stored.push(Buffer.from(content));
          },
        },
        clock: { now: () => Date.now(), sleep: (ms) => Bun.sleep(ms), newId: () => "id" },
        tls: () => serverTlsOptions(tls),
        counter: new ConnectionCounter({ total: 10, perIp: 10 }),
        log: createLogger("error"),
      });
      try {
        const { client } = await ehloClient(listener.port);
        if (starttls) {
          expect((await client.command("STARTTLS")).code).toBe(220);
          await client.upgradeTls();
          expect((await client.command("EHLO client.test")).code).toBe(250);
        }
        // Each message in 10 KiB writes with pauses between (a read each), kept unto its end;
        // the second envelope waits in the session's input behind the first commit, which holds.
        const send = async (message: Buffer) => {
          const bytes = Buffer.concat([message, Buffer.from(".\r\n")]);
          for (let at = 0; at < bytes.length; at += 10240) {
            await client.write(bytes.subarray(at, at + 10240));
            await Bun.sleep(2);
          }
        };
        for (const line of ["MAIL FROM:<a@remote.test>", "RCPT TO:<b@example.test>", "DATA"])
          expect((await client.command(line)).code).toBeLessThan(400);
        await send(messages[0]!);
        await client.write("MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n");
        await Bun.sleep(50);
        release();
        expect((await client.readReplies(4)).map((r) => r.code)).toEqual([250, 250, 250, 354]);
        await send(messages[1]!);
        expect((await client.readReply()).code).toBe(250);
        expect(stored).toHaveLength(2);
        for (const [n, content] of stored.entries()) {
          // after the Received field we add
          const body = content.subarray(content.indexOf("Subject: "));
          expect(body.equals(messages[n]!)).toBe(true);
        }
        await client.quit();
      } finally {
        await listener.stop(0);
      }
    },
    20000,
  );
});
