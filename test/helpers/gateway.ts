// A configured `postern serve` for end-to-end SMTP tests: the local domain example.test with
// a catch-all mailbox route and one submission user, set up with the CLI before serve starts.
import { afterAll, beforeAll } from "bun:test";
import { rmSync } from "node:fs";
import postgres from "postgres";
import { cliEnv, runCli, tempDir } from "./cli.ts";
import { type DnsTestServer, startDnsServer, type Zone } from "./dns.ts";
import { freshDatabaseUrl } from "./pg.ts";
import { type ServeProcess, startServe } from "./serve.ts";

export const DOMAIN = "example.test";
export const USER = "u@example.test";
export const PASSWORD = "correct horse battery staple";
export const ADMIN_TOKEN = "e2e-admin-token-0123456789";

/**
 * What the gateway's resolver (POSTERN_DNS_SERVERS) sees: remote.test and elsewhere.test exist
 * (implicit MX), so sender- and recipient-domain checks pass; any other name is NXDOMAIN.
 */
export const ZONE: Zone = {
  "example.test": { MX: [{ exchange: "mx.example.test", priority: 10 }] },
  "mx.example.test": { A: ["127.0.0.1"] },
  "remote.test": { A: ["127.0.0.1"] },
  "elsewhere.test": { A: ["127.0.0.1"] },
};

export interface Gateway {
  server: ServeProcess;
  env: Record<string, string>;
  dns: DnsTestServer;
  /** postgres.js on the gateway's database (PostgreSQL runs only). */
  sql: postgres.Sql | undefined;
  /** SIGKILL now; resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts serve again on the same database and data dir (new ports). */
  restart(): Promise<void>;
  /** Every message kept for ADDRESS, read through the HTTP mailbox API (newest first, all pages). */
  mailbox(address: string): Promise<{ id: string; from: string; subject: string | null; raw: string }[]>;
  /** Kills the server, closes the database client and the DNS server, removes the data dir. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** DATABASE_URL = a fresh PostgreSQL database; false: the embedded database. */
  postgres: boolean;
  env?: Record<string, string>;
  /** Skip the CLI set-up (domain, route, user) when the test needs none. */
  bare?: boolean;
  /** Reuse a database another gateway already set up (PostgreSQL only). */
  databaseUrl?: string;
  /** A fresh database on this PostgreSQL server (a superuser URL) instead of the suite's. */
  server?: string;
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const url = opts.postgres ? (opts.databaseUrl ?? (await freshDatabaseUrl(opts.server))) : undefined;
  const dns = await startDnsServer(structuredClone(ZONE));
  const env = cliEnv({
    DATABASE_URL: url,
    POSTERN_DNS_SERVERS: dns.spec,
    // The whole inbound path (address checks, SPF/DKIM/DMARC), answered by the zone above.
    POSTERN_DNS_CHECKS: "on",
    // Outbound delivery to the zone's 127.0.0.1 goes to the discard port: refused, so deferred.
    POSTERN_OUTBOUND_PORT: "9",
    // The zone's MX hosts are on loopback.
    POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
    // Every test client is 127.0.0.1: per-IP message rates are tested on their own.
    POSTERN_INBOUND_PER_MINUTE: "0",
    POSTERN_DATA_DIR: tempDir("postern-e2e-"),
    POSTERN_HOSTNAME: "mx.example.test",
    POSTERN_ADMIN_TOKEN: ADMIN_TOKEN,
    // serve's stdout is a pipe nobody reads: keep it quiet so it never fills.
    POSTERN_LOG_LEVEL: "warn",
    ...opts.env,
  });
  let server: ServeProcess;
  try {
    if (!opts.bare && !opts.databaseUrl) {
      await cli(["domain", "add", DOMAIN], env);
      await cli(["route", "add", `*@${DOMAIN}`, "mailbox"], env);
      await cli(
        ["user", "add", USER, "--password-stdin", "--may-send-as", `*@${DOMAIN}`],
        env,
        `${PASSWORD}\n`,
      );
    }
    server = await startServeRetrying(env);
  } catch (err) {
    await dns.close();
    throw err;
  }
  const sql = url ? postgres(url, { max: 2, onnotice: () => {} }) : undefined;
  const gateway: Gateway = {
    server,
    env,
    dns,
    sql,
    async kill() {
      gateway.server.proc.kill("SIGKILL");
      await gateway.server.proc.exited;
    },
    async restart() {
      gateway.server = await startServeRetrying(env);
    },
    async mailbox(address) {
      const all: Awaited<ReturnType<Gateway["mailbox"]>> = [];
      let query = "limit=500";
      for (;;) {
        const res = await fetch(
          `http://127.0.0.1:${gateway.server.httpPort}/api/mailboxes/${encodeURIComponent(address)}/messages?${query}`,
          { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } },
        );
        if (!res.ok) throw new Error(`mailbox API: ${res.status} ${await res.text()}`);
        all.push(...((await res.json()) as typeof all));
        const next = res.headers.get("x-next-cursor");
        if (!next) return all;
        query = `limit=500&cursor=${encodeURIComponent(next)}`;
      }
    },
    async close() {
      if (gateway.server.proc.exitCode === null && gateway.server.proc.signalCode === null)
        await gateway.kill();
      await sql?.end({ timeout: 2 });
      await dns.close();
      rmSync(env.POSTERN_DATA_DIR!, { recursive: true, force: true });
    },
  };
  return gateway;
}

/**
 * One gateway for the enclosing describe block: started in its beforeAll, closed in its afterAll.
 * What it returns stands for that gateway from the start, so tests can name it like a constant.
 */
export function suiteGateway(opts: GatewayOptions): Gateway {
  let gw: Gateway | undefined;
  // PGlite's first open takes longer than a fresh PostgreSQL database.
  beforeAll(
    async () => {
      gw = await startGateway(opts);
    },
    opts.postgres ? 40000 : 60000,
  );
  afterAll(async () => {
    await gw?.close();
  });
  const started = (): Gateway => {
    if (!gw) throw new Error("the suite's gateway did not start");
    return gw;
  };
  return {
    get server() {
      return started().server;
    },
    get env() {
      return started().env;
    },
    get dns() {
      return started().dns;
    },
    get sql() {
      return started().sql;
    },
    kill: () => started().kill(),
    restart: () => started().restart(),
    mailbox: (address) => started().mailbox(address),
    close: () => started().close(),
  };
}

/**
 * startServe picks free ports and then lets go of them before serve binds them; on a busy
 * machine another socket can take one in between. Then it is simply tried again.
 */
async function startServeRetrying(env: Record<string, string>): Promise<ServeProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startServe(env, 40000);
    } catch (err) {
      if (attempt >= 3 || !/in use|[Ff]ailed to listen/.test(String(err))) throw err;
    }
  }
}

async function cli(args: string[], env: Record<string, string>, stdin?: string): Promise<void> {
  const r = await runCli(args, env, stdin);
  if (r.code !== 0) throw new Error(`postern ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
}

export interface SwaksResult {
  code: number;
  /** swaks' transcript (stdout and stderr). */
  out: string;
}

/** Runs swaks against 127.0.0.1 with the given arguments; never throws on a refused message. */
export async function swaks(args: string[], timeoutMs = 15000): Promise<SwaksResult> {
  const proc = Bun.spawn(["swaks", "--timeout", "10", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, out: stdout + stderr };
  } finally {
    clearTimeout(timer);
  }
}

export interface SwaksMessage {
  port: number;
  from: string;
  to: string;
  /** The Subject of the message swaks makes up; none when left out. */
  subject?: string;
  /** More swaks options: --tls, --auth..., --pipeline. */
  extra?: string[];
}

/** swaks sends one message to 127.0.0.1:PORT; never throws on a refused message. */
export function swaksSend(m: SwaksMessage): Promise<SwaksResult> {
  const subject = m.subject === undefined ? [] : ["--header", `Subject: ${m.subject}`];
  return swaks([
    "--server",
    `127.0.0.1:${m.port}`,
    ...(m.extra ?? []),
    "--from",
    m.from,
    "--to",
    m.to,
    ...subject,
  ]);
}
