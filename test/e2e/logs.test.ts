// The JSON log lines an operator greps: one per SMTP session, per accepted message, per attempt.
import { afterAll, describe, expect, test } from "bun:test";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { startServe } from "../helpers/serve.ts";
import { queuedId, swaks } from "../helpers/swaks.ts";

describe("logs", () => {
  let sink: SmtpPeer;
  afterAll(async () => {
    await sink?.stop();
  });

  test("session end, message accepted and delivery attempt are JSON lines with the facts", async () => {
    sink = await SmtpPeer.start();
    const env = cliEnv({ POSTERN_DATA_DIR: tempDir(), POSTERN_LOG_LEVEL: "info" });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", `relay:127.0.0.1:${sink.port}`], env)).code).toBe(
      0,
    );
    const server = await startServe(env);
    const transcript = await swaks({ port: server.smtpPort, from: "a@remote.test", to: "b@example.test" });
    const id = queuedId(transcript);
    expect(id).toBeDefined();
    const deadline = Date.now() + 10000;
    while (sink.messages.length === 0 && Date.now() < deadline) await Bun.sleep(50);
    await Bun.sleep(200);
    expect(await server.stop()).toBe(0);
    const lines = (await new Response(server.proc.stdout).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) expect(l).toMatchObject({ time: expect.any(String), level: expect.any(String) });
    expect(lines.find((l) => l.msg === "message accepted")).toMatchObject({
      id,
      from: "a@remote.test",
      rcpts: 1,
      port: "smtp",
      ip: "127.0.0.1",
    });
    expect(lines.find((l) => l.msg === "smtp session end")).toMatchObject({ port: "smtp", outcome: "quit" });
    expect(lines.find((l) => l.msg === "delivery attempt")).toMatchObject({
      id,
      rcpt: "b@example.test",
      host: "127.0.0.1",
      outcome: "delivered",
      reply: expect.stringMatching(/^250 /),
    });
  }, 60000);
});
