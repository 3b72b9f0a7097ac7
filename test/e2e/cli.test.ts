import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { cliEnv, runCli, tempDir } from "../helpers/cli.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startServe } from "../helpers/serve.ts";

/** One line on stderr, no stack trace. */
function expectOneLineError(stderr: string, text: string) {
  expect(stderr).toContain(text);
  expect(stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(stderr).not.toMatch(/\bat .*:\d+/);
}

describe.skipIf(!havePostgres)("CLI verbs on PostgreSQL", () => {
  let env: Record<string, string>;
  let url: string;
  beforeAll(async () => {
    url = await freshDatabaseUrl();
    env = cliEnv({ DATABASE_URL: url, POSTERN_HOSTNAME: "mx.example.test", POSTERN_DATA_DIR: tempDir() });
  });

  test("migrate", async () => {
    const r = await runCli(["migrate"], env);
    expect(r).toMatchObject({ code: 0, stdout: "migrations applied\n" });
  });

  test("domain add / ls / dns / rm", async () => {
    const add = await runCli(["domain", "add", "Example.TEST", "--selector", "k1"], env);
    expect(add.code).toBe(0);
    expect(add.stdout).toContain("example.test.\t3600\tIN\tMX\t10 mx.example.test.");
    expect(add.stdout).toContain("k1-rsa._domainkey.example.test.");
    expect(add.stdout).toContain("k1-ed25519._domainkey.example.test.");
    const dup = await runCli(["domain", "add", "example.test"], env);
    expect(dup.code).toBe(1);
    expectOneLineError(dup.stderr, "domain example.test already exists");
    const bad = await runCli(["domain", "add", "not a domain"], env);
    expect(bad.code).toBe(1);
    expectOneLineError(bad.stderr, 'invalid domain "not a domain"');
    expect((await runCli(["domain", "ls"], env)).stdout).toStartWith("example.test\tselector=k1\t");
    const dns = await runCli(["domain", "dns", "example.test"], env);
    // Same keys as printed at `add`: the records come from the stored keys.
    expect(dns.stdout).toBe(add.stdout.slice(add.stdout.indexOf("\n") + 1));
    const unknown = await runCli(["domain", "dns", "nope.test"], env);
    expect(unknown.code).toBe(1);
    expectOneLineError(unknown.stderr, "unknown domain nope.test");
  });

  test("user add / ls / passwd / rm", async () => {
    const add = await runCli(
      ["user", "add", "alice@example.test", "--password-stdin", "--may-send-as", "*@example.test"],
      env,
      "s3cret-pass\n",
    );
    expect(add).toMatchObject({ code: 0, stdout: "user alice@example.test added\n" });
    const sql = postgres(url, { max: 1 });
    try {
      const [row] =
        await sql`select password_hash, may_send_as from users where address = 'alice@example.test'`;
      expect(row!.password_hash).toStartWith("$argon2id$");
      expect(await Bun.password.verify("s3cret-pass", row!.password_hash)).toBe(true);
      expect(row!.may_send_as).toEqual(["*@example.test"]);

      const generated = await runCli(["user", "add", "bob@example.test"], env);
      expect(generated.code).toBe(0);
      const password = /^password: (\S{20})$/m.exec(generated.stdout)?.[1];
      expect(password).toBeDefined();
      const [bob] = await sql`select password_hash from users where address = 'bob@example.test'`;
      expect(await Bun.password.verify(password!, bob!.password_hash)).toBe(true);

      const passwd = await runCli(
        ["user", "passwd", "bob@example.test", "--password-stdin"],
        env,
        "new-one\n",
      );
      expect(passwd.code).toBe(0);
      const [bob2] = await sql`select password_hash from users where address = 'bob@example.test'`;
      expect(await Bun.password.verify("new-one", bob2!.password_hash)).toBe(true);
    } finally {
      await sql.end();
    }
    const ls = await runCli(["user", "ls"], env);
    expect(ls.stdout).toContain("alice@example.test\tmay-send-as=alice@example.test,*@example.test\n");

    const foreign = await runCli(["user", "add", "x@elsewhere.test", "--password-stdin"], env, "p\n");
    expect(foreign.code).toBe(1);
    expectOneLineError(foreign.stderr, "domain elsewhere.test is not local");
    const empty = await runCli(["user", "add", "y@example.test", "--password-stdin"], env, "");
    expect(empty.code).toBe(2);
    expectOneLineError(empty.stderr, "standard input is empty");
    const badPattern = await runCli(["user", "add", "z@example.test", "--may-send-as", "*@"], env);
    expect(badPattern.code).toBe(1);
    expectOneLineError(badPattern.stderr, 'invalid --may-send-as "*@"');

    expect((await runCli(["user", "rm", "bob@example.test"], env)).code).toBe(0);
    const again = await runCli(["user", "rm", "bob@example.test"], env);
    expect(again.code).toBe(1);
    expectOneLineError(again.stderr, "unknown user bob@example.test");
  });

  test("route add / ls / rm", async () => {
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    const hook = await runCli(["route", "add", "hook@example.test", "webhook:http://127.0.0.1:9/in"], env);
    expect(hook.code).toBe(0);
    expect(hook.stdout).toMatch(/webhook secret .*: [A-Za-z0-9_-]{43}\n/);
    const badTarget = await runCli(["route", "add", "x@example.test", "smtp:host"], env);
    expect(badTarget.code).toBe(1);
    expectOneLineError(badTarget.stderr, 'unknown target "smtp:host"');
    const dup = await runCli(["route", "add", "*@example.test", "mailbox"], env);
    expect(dup.code).toBe(1);
    expectOneLineError(dup.stderr, "a route for *@example.test already exists");
    expect((await runCli(["route", "ls"], env)).stdout).toBe(
      "*@example.test\tmailbox\nhook@example.test\twebhook:http://127.0.0.1:9/in\n",
    );
    expect((await runCli(["route", "rm", "hook@example.test"], env)).code).toBe(0);
    const rmDomain = await runCli(["domain", "rm", "example.test"], env);
    expect(rmDomain.code).toBe(1);
    expectOneLineError(rmDomain.stderr, "still has 1 user(s) and 1 route(s)");
  });

  test("usage errors exit 2 with one line", async () => {
    for (const args of [
      ["bogus"],
      ["domain"],
      ["domain", "add"],
      ["user", "add", "--nope", "a@b.test"],
      ["route", "add", "x"],
    ]) {
      const r = await runCli(args, env);
      expect(r.code).toBe(2);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    }
  });

  test("a bad setting stops the CLI with one line naming it", async () => {
    const r = await runCli(["domain", "ls"], { ...env, POSTERN_SMTP_PORT: "smtp" });
    expect(r.code).toBe(1);
    expectOneLineError(r.stderr, 'POSTERN_SMTP_PORT="smtp" is invalid: expected a whole number');
  });

  test("an unreachable database is one line, exit 1", async () => {
    const r = await runCli(["domain", "ls"], { ...env, DATABASE_URL: "postgres://nobody@127.0.0.1:1/x" });
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  });
});

describe("secrets in settings never reach stderr", () => {
  const SECRET = "S3cretDbPass";
  const env = cliEnv({ POSTERN_DATA_DIR: tempDir(), POSTERN_HOSTNAME: "mx.example.test" });
  test.each([
    [
      "a DATABASE_URL with a bad scheme",
      { DATABASE_URL: `postgresq://postern:${SECRET}@db/postern` },
      "DATABASE_URL=",
    ],
    [
      "a malformed DATABASE_URL (password with an unencoded @ and /)",
      { DATABASE_URL: `postern:${SECRET}@x/y@db/postern` },
      "DATABASE_URL=",
    ],
    [
      "a database that does not answer",
      { DATABASE_URL: `postgres://postern:${SECRET}@127.0.0.1:1/postern` },
      "ECONNREFUSED",
    ],
    ["a database URL Bun cannot parse", { DATABASE_URL: `postgres://postern:${SECRET}@db:99999/x` }, "URL"],
    ["a short admin token", { POSTERN_ADMIN_TOKEN: SECRET }, "POSTERN_ADMIN_TOKEN="],
  ])("%s: one line naming the problem, not the secret", async (_name, vars, names) => {
    for (const verb of [["domain", "ls"], ["serve"]]) {
      const r = await runCli(verb, { ...env, ...vars });
      expect(r.code).toBe(1);
      expectOneLineError(r.stderr, names);
      expect(r.stderr + r.stdout).not.toContain(SECRET);
    }
  });
});

describe("serve on the embedded database", () => {
  const dataDir = tempDir();
  const env = cliEnv({ POSTERN_DATA_DIR: dataDir, POSTERN_HOSTNAME: "mx.embedded.test" });
  let server: Awaited<ReturnType<typeof startServe>>;
  beforeAll(async () => {
    server = await startServe(env);
  }, 40000);
  afterAll(async () => {
    server?.proc.kill("SIGKILL");
  });

  test("the data dir is for the owner only (PGlite's files inside are 0666: the dir must shut them off)", async () => {
    const { statSync } = await import("node:fs");
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(`${dataDir}/tls-key.pem`).mode & 0o777).toBe(0o600);
    expect(statSync(`${dataDir}/control.sock`).mode & 0o077).toBe(0);
  });

  test("/healthz answers 200 ok", async () => {
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  test("CLI verbs go through the control socket while serve holds the database", async () => {
    const add = await runCli(["domain", "add", "embedded.test"], env);
    expect(add.code).toBe(0);
    expect(add.stdout).toContain("embedded.test.\t3600\tIN\tMX\t10 mx.embedded.test.");
    const user = await runCli(["user", "add", "a@embedded.test", "--password-stdin"], env, "pw\n");
    expect(user).toMatchObject({ code: 0, stdout: "user a@embedded.test added\n" });
    expect((await runCli(["user", "ls"], env)).stdout).toContain("a@embedded.test\t");
    const dup = await runCli(["domain", "add", "embedded.test"], env);
    expect(dup.code).toBe(1);
    expectOneLineError(dup.stderr, "domain embedded.test already exists");
    expect((await runCli(["migrate"], env)).code).toBe(0);
  });

  test("a second serve on the same data dir exits with the lock message; the first keeps its data", async () => {
    const second = Bun.spawn([process.execPath, `${import.meta.dir}/../../src/cli.ts`, "serve"], {
      env: { ...env, POSTERN_HTTP_PORT: "0", POSTERN_HTTPS_PORT: "0", POSTERN_LISTEN: "127.0.0.1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await second.exited).toBe(1);
    const stderr = await new Response(second.stderr).text();
    expectOneLineError(stderr, `in use by another Postern process (pid ${server.proc.pid})`);
    expect((await runCli(["domain", "ls"], env)).stdout).toStartWith("embedded.test\t");
  });

  test("SIGTERM stops it with status 0 and releases the data dir", async () => {
    expect(await server.stop()).toBe(0);
    const ls = await runCli(["domain", "ls"], env);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toStartWith("embedded.test\t");
  });
});
