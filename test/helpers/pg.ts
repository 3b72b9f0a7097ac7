// One throwaway PostgreSQL cluster per test run, a fresh database per test file.
// TEST_DATABASE_URL points the suite at an existing server instead.
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
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

function run(cmd: string[], asPostgres: boolean): void {
  const isRoot = process.getuid?.() === 0;
  const argv = asPostgres && isRoot ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
  const res = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`${cmd[0]} failed: ${res.stderr || res.stdout}`);
}

async function startCluster(): Promise<string> {
  const bin = pgBinDir();
  if (!bin) throw new Error("no PostgreSQL binaries (initdb, pg_ctl) and no TEST_DATABASE_URL");
  const dir = mkdtempSync(join(tmpdir(), "postern-pg-"));
  if (process.getuid?.() === 0) chownSync(dir, uidOf("postgres"), gidOf("postgres"));
  const data = join(dir, "data");
  const port = await freePort();
  run([join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"], true);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  run([join(bin, "pg_ctl"), "-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "start"], true);
  stopCluster = () => {
    run([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop"], true);
    rmSync(dir, { recursive: true, force: true });
  };
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

function uidOf(user: string): number {
  return Number(spawnSync("id", ["-u", user], { encoding: "utf8" }).stdout.trim());
}
function gidOf(user: string): number {
  return Number(spawnSync("id", ["-g", user], { encoding: "utf8" }).stdout.trim());
}

/** A new, empty database on the test server; returns its URL. */
export async function freshDatabaseUrl(): Promise<string> {
  adminUrl ??= process.env.TEST_DATABASE_URL
    ? Promise.resolve(process.env.TEST_DATABASE_URL)
    : startCluster();
  const url = new URL(await adminUrl);
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
