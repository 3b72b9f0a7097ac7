// Stopping the listener while a commit is in progress: the session is answered with its 250
// (then 421) even when the commit takes longer than the short grace idle sessions get, up to
// the commit deadline; so no commit lands after its session was cut.
import { describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";
import { ConnectionCounter, listenSmtp } from "../../src/smtp/listener.ts";
import type { SessionBackend } from "../../src/smtp/session.ts";
import { ehloClient } from "../helpers/smtp-client.ts";

describe("stopping the SMTP listener", () => {
  test("waits past its grace for a commit in progress, up to the commit deadline", async () => {
    const commit = Promise.withResolvers<void>();
    let accepting = false;
    const backend: SessionBackend = {
      authenticate: async () => ({ kind: "wrong" }),
      checkSender: async () => undefined,
      checkRecipient: async () => ({ ok: true, target: { kind: "mailbox" } }),
      accept: async () => {
        accepting = true;
        await commit.promise;
      },
    };
    const listener = listenSmtp({
      hostname: "127.0.0.1",
      port: 0,
      kind: "smtp",
      backend,
      clock: { now: () => Date.now(), sleep: (ms) => Bun.sleep(ms), newId: () => "ID1" },
      tls: undefined,
      counter: new ConnectionCounter({ total: 10, perIp: 10 }),
      log: createLogger("error"),
      commitDeadlineMs: 10_000,
      policy: {
        port: "smtp",
        hostname: "mx.example.test",
        maxMessageBytes: 100_000,
        maxRecipients: 10,
        tlsAvailable: false,
        maxErrors: 10,
        maxAuthFailures: 3,
        authFailureDelayMs: () => 0,
      },
    });
    const { client } = await ehloClient(listener.port);
    await client.write("MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n");
    await client.readReplies(3);
    await client.write("Subject: slow commit\r\n\r\nbody\r\n.\r\n");
    while (!accepting) await Bun.sleep(5);
    const started = Date.now();
    const stopped = listener.stop(200);
    setTimeout(() => commit.resolve(), 1500); // longer than the 200 ms grace
    const [queued, closing] = await client.readReplies(2, 5000);
    await stopped;
    expect(queued!.code).toBe(250);
    expect(closing!.raw).toStartWith("421 4.3.2");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
  });
});
