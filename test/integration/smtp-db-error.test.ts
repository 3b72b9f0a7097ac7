import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer } from "../helpers/server.ts";
import { swaks } from "../helpers/swaks.ts";

describe.skipIf(!havePostgres)("a database failure at end of data", () => {
  let server: RunningServer;
  let sql: postgres.Sql;

  beforeAll(async () => {
    const url = await freshDatabaseUrl();
    const env = cliEnv({ DATABASE_URL: url });
    expect((await runCli(["domain", "add", "example.test"], env)).code).toBe(0);
    expect((await runCli(["route", "add", "*@example.test", "mailbox"], env)).code).toBe(0);
    sql = postgres(url, { max: 1, onnotice: () => {} });
    server = await startTestServer({ DATABASE_URL: url });
  });
  afterAll(async () => {
    await server?.stop();
    await sql?.end();
  });

  const send = () => swaks({ port: server.smtpPorts.smtp, from: "s@remote.test", to: "a@example.test" });

  test("gives 451 4.3.0, never 250; the server goes on once the database is back", async () => {
    await sql`alter table deliveries rename to deliveries_away`;
    try {
      const refused = await send();
      expect(refused).toContain("451 4.3.0");
      expect(refused).not.toContain("queued as");
    } finally {
      await sql`alter table deliveries_away rename to deliveries`;
    }
    // The failed transaction left nothing half-written.
    expect((await sql`select count(*)::int as n from messages`)[0]!.n).toBe(0);
    const accepted = await send();
    expect(accepted).toContain("250 2.0.0 Ok: queued as");
    expect((await sql`select count(*)::int as n from messages`)[0]!.n).toBe(1);
  });
});
