// API keys: scoped to their domains on /api/send (bearer) and SMTP AUTH (swaks, a real client).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { swaks } from "../helpers/swaks.ts";

const TOKEN = "admin-token-for-the-key-tests";

describe.skipIf(!havePostgres)("API keys", () => {
  let sink: SmtpPeer;
  let server: RunningServer;
  let env: Record<string, string>;
  let key = "";
  const send = (bearer: string, body: unknown, path = "/api/send") =>
    fetch(`http://127.0.0.1:${server.httpPort}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    sink = await SmtpPeer.start({});
    const url = await freshDatabaseUrl();
    env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test" });
    for (const d of ["example.test", "other.test"])
      expect((await runCli(["domain", "add", d], env)).code).toBe(0);
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_HOSTNAME: "mx.example.test",
      POSTERN_ADMIN_TOKEN: TOKEN,
      POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`,
    });
  });
  afterAll(async () => {
    await server?.stop();
    await sink?.stop();
  });

  test("key add prints the key once; bad names, missing and foreign domains are refused", async () => {
    const added = await runCli(
      ["key", "add", "shop", "--domain", "example.test", "--limit-per-hour", "50"],
      env,
    );
    expect(added.code).toBe(0);
    const m =
      /^key shop added for example\.test\nkey \(shown once; SMTP AUTH user shop, or Authorization: Bearer\): (pk_\S+)\n$/.exec(
        added.stdout,
      );
    key = m![1]!;
    const ls = await runCli(["key", "ls"], env);
    expect(ls.stdout).toMatch(/^shop\texample\.test\t50\/h\t\d{4}-/);
    expect(ls.stdout).not.toContain(key);
    expect((await runCli(["key", "add", "shop", "--domain", "example.test"], env)).stderr).toContain(
      "key shop exists already",
    );
    expect((await runCli(["key", "add", "a@b", "--domain", "example.test"], env)).stderr).toContain(
      'invalid key name "a@b"',
    );
    expect((await runCli(["key", "add", "x"], env)).code).toBe(2);
    expect((await runCli(["key", "add", "x", "--domain", "nowhere.test"], env)).stderr).toContain(
      "domain nowhere.test is not local",
    );
  });

  test("/api/send with a key: its domains only (403 otherwise); the rest of the API is not the key's", async () => {
    const mail = { to: ["r@remote.test"], subject: "s", text: "t" };
    const ok = await send(key, { ...mail, from: "news@example.test" });
    expect(ok.status).toBe(202);
    const foreign = await send(key, { ...mail, from: "news@other.test" });
    expect(foreign.status).toBe(403);
    expect(await foreign.json()).toEqual({
      error: "from: other.test is not a domain of key shop",
      field: "from",
    });
    const headerFrom = await send(key, {
      from: "news@example.test",
      to: ["r@remote.test"],
      raw: "From: ceo@other.test\r\nSubject: s\r\n\r\nt\r\n",
    });
    expect(headerFrom.status).toBe(403);
    expect((await send(key, { address: "x@remote.test" }, "/api/suppressions")).status).toBe(403);
    expect((await send(`${key}x`, { ...mail, from: "news@example.test" })).status).toBe(401);
    // the admin token still sends from any local domain
    expect((await send(TOKEN, { ...mail, from: "news@other.test" })).status).toBe(202);
  });

  test("SMTP AUTH with a key (swaks on 587): 553 5.7.1 for another domain's sender, 235 and 250 for its own", async () => {
    const auth = (user: string, password: string, from: string) =>
      swaks({
        port: server.smtpPorts.submission,
        from,
        to: "r@remote.test",
        extra: [
          "--tls",
          "--auth",
          "PLAIN",
          "--auth-user",
          user,
          "--auth-password",
          password,
          "--h-From",
          from,
        ],
      });
    const own = await auth("shop", key, "app@example.test");
    expect(own).toContain("235 2.7.0");
    expect(own).toMatch(/250 2\.0\.0 Ok: queued as \S+/);
    const foreign = await auth("shop", key, "app@other.test");
    expect(foreign).toContain("553 5.7.1");
    expect(await auth("shop", `${key}x`, "app@example.test")).toContain("535 5.7.8");

    expect((await runCli(["key", "rm", "shop"], env)).code).toBe(0);
    expect((await runCli(["key", "rm", "shop"], env)).code).toBe(1);
    expect(await auth("shop", key, "app@example.test")).toContain("535 5.7.8");
    expect(
      (await send(key, { to: ["r@remote.test"], subject: "s", text: "t", from: "n@example.test" })).status,
    ).toBe(401);
  });
});
