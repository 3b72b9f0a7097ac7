// SIGTERM under load: the server stops within 30 s with status 0, and every message that got its
// 250 is delivered, before the stop or after the restart.
import { afterAll, describe, expect, test } from "bun:test";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startServe } from "../helpers/serve.ts";
import { sendOnNewSession } from "../helpers/smtp-client.ts";

describe.skipIf(!havePostgres)("graceful shutdown", () => {
  let sink: SmtpPeer;
  afterAll(async () => {
    await sink?.stop();
  });

  test("SIGTERM during load: exit 0, nothing that got a 250 is lost", async () => {
    sink = await SmtpPeer.start();
    const url = await freshDatabaseUrl();
    const env = cliEnv({ DATABASE_URL: url, POSTERN_DATA_DIR: tempDir(), POSTERN_LOG_LEVEL: "warn" });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", `relay:127.0.0.1:${sink.port}`], env)).code).toBe(
      0,
    );
    let server = await startServe(env);

    const accepted = new Set<string>();
    let stop = false;
    const sender = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const subject = `load ${n}-${i}`;
        try {
          const done = await sendOnNewSession(
            server.smtpPort,
            "load@remote.test",
            [`rcpt${n}@example.test`],
            `From: load@remote.test\r\nSubject: ${subject}\r\n\r\nx\r\n`,
          );
          if (done.code === 250) accepted.add(subject);
        } catch {
          return; // refused or cut off while the server stops: that message never got its 250
        }
      }
    };
    const senders = Array.from({ length: 6 }, (_, n) => sender(n));
    await Bun.sleep(1500);
    const stoppedAt = Date.now();
    const exit = await server.stop();
    stop = true;
    await Promise.all(senders);
    expect(exit).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    expect(accepted.size).toBeGreaterThan(10);

    server = await startServe(env);
    try {
      const subjects = () =>
        new Set(
          sink.messages.map((m) => /Subject: (load [\d-]+)/.exec(new TextDecoder().decode(m.data))?.[1]),
        );
      const deadline = Date.now() + 20_000;
      while ([...accepted].some((s) => !subjects().has(s)) && Date.now() < deadline) await Bun.sleep(100);
      const missing = [...accepted].filter((s) => !subjects().has(s));
      expect(missing).toEqual([]);
    } finally {
      await server.stop();
    }
  }, 90_000);
});
