// POSTERN_SMARTHOST with credentials: all outbound mail through one host, AUTH over STARTTLS.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config.ts";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";

const TOKEN = "smarthost-test-admin-token";

describe.skipIf(!havePostgres)("smarthost", () => {
  let sink: SmtpPeer;
  let server: RunningServer;

  beforeAll(async () => {
    sink = await SmtpPeer.start({ starttls: true, auth: { username: "relayuser", password: "relaypass" } });
    const url = await freshDatabaseUrl();
    expect((await runCli(["domain", "add", "example.test"], cliEnv({ DATABASE_URL: url }))).code).toBe(0);
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_LOG_LEVEL: process.env.DBG ? "info" : "error",
      POSTERN_ADMIN_TOKEN: TOKEN,
      POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`,
      POSTERN_SMARTHOST_USER: "relayuser",
      POSTERN_SMARTHOST_PASSWORD: "relaypass",
    });
  });
  afterAll(async () => {
    await server?.stop();
    await sink?.stop();
  });

  test("mail for any domain goes to the smarthost, authenticated, over TLS", async () => {
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/api/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({
        from: "a@example.test",
        to: ["x@anywhere.test"],
        subject: "via smarthost",
        text: "hi",
      }),
    });
    expect(res.status).toBe(202);
    const deadline = Date.now() + 10000;
    while (sink.messages.length === 0 && Date.now() < deadline) await Bun.sleep(50);
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]).toMatchObject({
      tls: true,
      authUser: "relayuser",
      recipients: ["x@anywhere.test"],
    });
  });

  test("a user without a password (or the reverse) is refused at start-up with one line", () => {
    expect(() => parseConfig({ POSTERN_SMARTHOST: "h:25", POSTERN_SMARTHOST_USER: "u" })).toThrow(
      "POSTERN_SMARTHOST_USER and POSTERN_SMARTHOST_PASSWORD must be set together",
    );
  });
});
