// One throwaway PostgreSQL cluster per test run, a fresh database per test file.
// TEST_DATABASE_URL points the suite at an existing server instead.
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { migrate } from "../../src/db/migrate.ts";
import { type Database, openDatabase } from "../../src/db/open.ts";
import { tempDir } from "./cli.ts";
import { freePort } from "./serve.ts";

let adminUrl: Promise<string> | undefined;
let stopCluster: (() => void) | undefined;

/** Stops the cluster this run started (called once, after the last test file). */
export function stopTestCluster(): void {
  stopCluster?.();
  stopCluster = undefined;
}

function pgBinDir(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"))) return dir;
  }
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, "bin")).find((d) => existsSync(join(d, "initdb")));
}

/** True when the suite can reach PostgreSQL (its own cluster or TEST_DATABASE_URL). */
export const havePostgres = Boolean(process.env.TEST_DATABASE_URL || pgBinDir());

/** True when a test can start (and stop) a PostgreSQL cluster of its own. */
export const haveClusters = Boolean(pgBinDir());

function run(cmd: string[], asPostgres: boolean): void {
  const isRoot = process.getuid?.() === 0;
  const argv = asPostgres && isRoot ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
  const res = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`${cmd[0]} failed: ${res.stderr || res.stdout}`);
}

/** A PostgreSQL cluster of the test run's own, which a test may stop and start again. */
export interface TestCluster {
  /** The superuser's URL (database `postgres`). */
  url: string;
  /** `pg_ctl stop -m fast`: sessions are cut, as in a managed database's restart. */
  stop(): void;
  /** Starts it again on the same port; returns once it accepts connections. */
  start(): void;
  /** Stops it (if running) and removes its files. */
  destroy(): void;
}

/** A new cluster on a free port, started. */
export async function startCluster(): Promise<TestCluster> {
  const bin = pgBinDir();
  if (!bin) throw new Error("no PostgreSQL binaries (initdb, pg_ctl) and no TEST_DATABASE_URL");
  const dir = mkdtempSync(join(tmpdir(), "postern-pg-"));
  if (process.getuid?.() === 0) chownSync(dir, uidOf("postgres"), gidOf("postgres"));
  const data = join(dir, "data");
  const port = await freePort();
  run([join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"], true);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const pgCtl = (...args: string[]) => run([join(bin, "pg_ctl"), "-D", data, ...args], true);
  const start = () => pgCtl("-o", opts, "-l", join(dir, "log"), "-w", "start");
  start();
  let running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop() {
      pgCtl("-m", "fast", "-w", "stop");
      running = false;
    },
    start() {
      start();
      running = true;
    },
    destroy() {
      if (running) pgCtl("-m", "immediate", "stop");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function sharedCluster(): Promise<string> {
  const cluster = await startCluster();
  stopCluster = () => cluster.destroy();
  return cluster.url;
}

function uidOf(user: string): number {
  return Number(spawnSync("id", ["-u", user], { encoding: "utf8" }).stdout.trim());
}
function gidOf(user: string): number {
  return Number(spawnSync("id", ["-g", user], { encoding: "utf8" }).stdout.trim());
}

/** A new, empty database on the test server (or on `server`, a superuser URL); returns its URL. */
export async function freshDatabaseUrl(server?: string): Promise<string> {
  adminUrl ??= process.env.TEST_DATABASE_URL
    ? Promise.resolve(process.env.TEST_DATABASE_URL)
    : sharedCluster();
  const url = new URL(server ?? (await adminUrl));
  const name = `postern_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = postgres(url.href, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  url.pathname = `/${name}`;
  return url.href;
}

/** A new database on the test server with Postern's schema: its URL, and Postern's handle on it. */
export async function freshMigratedDatabase(): Promise<{ url: string; database: Database }> {
  const url = await freshDatabaseUrl();
  const database = await openDatabase({ databaseUrl: url, dataDir: tempDir() });
  await migrate(database);
  return { url, database };
}

/** Each database driver the suite can reach, as [name, open a fresh one]: PGlite always, PostgreSQL when there. */
export function databaseDrivers(): [string, () => Promise<Database>][] {
  const drivers: [string, () => Promise<Database>][] = [
    ["pglite", () => openDatabase({ databaseUrl: undefined, dataDir: tempDir() })],
  ];
  if (havePostgres) {
    drivers.push([
      "postgres",
      async () => openDatabase({ databaseUrl: await freshDatabaseUrl(), dataDir: tempDir() }),
    ]);
  }
  return drivers;
}
