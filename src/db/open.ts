// Opens the database the settings name: PostgreSQL through postgres.js when DATABASE_URL is set,
// otherwise PGlite in the data dir, held under an exclusive lock.
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import initdbWasmPath from "@electric-sql/pglite/initdb.wasm" with { type: "file" };
import fsBundlePath from "@electric-sql/pglite/pglite.data" with { type: "file" };
import pgliteWasmPath from "@electric-sql/pglite/pglite.wasm" with { type: "file" };
import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import type { Config } from "../config.ts";
import { acquireLock } from "./lock.ts";
import { preparingSmallStatements } from "./prepared.ts";
import * as schema from "./schema.ts";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
/** A transaction handle: everything a Db does, inside one transaction. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/** The rows of a `db.execute` result: postgres.js returns them, PGlite a result holding them. */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

export interface Database {
  db: Db;
  kind: "postgres" | "pglite";
  /** True when the database answers a trivial query. */
  ping(): Promise<boolean>;
  /**
   * LISTEN on a channel; resolves to the function that stops listening. `payload` is the
   * notification's; undefined when notifications may have been missed (listening again after an outage).
   */
  listen(channel: string, onNotify: (payload?: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
  /** Internal handle for the migrator, which is typed per driver. */
  driver:
    | { kind: "postgres"; db: ReturnType<typeof drizzlePostgres<typeof schema>> }
    | {
        kind: "pglite";
        db: ReturnType<typeof drizzlePglite<typeof schema>>;
      };
}

export function lockPath(dataDir: string): string {
  return join(dataDir, "postern.lock");
}

export async function openDatabase(config: Pick<Config, "databaseUrl" | "dataDir">): Promise<Database> {
  return config.databaseUrl ? openPostgres(config.databaseUrl) : openPglite(config.dataDir);
}

function openPostgres(url: string): Database {
  const client = postgres(url, { max: 10, onnotice: () => {} });
  const db = drizzlePostgres(preparingSmallStatements(client), { schema });
  return {
    db,
    kind: "postgres",
    driver: { kind: "postgres", db },
    ping: () => ping(db),
    listen: (channel, onNotify) => listenAcrossRestarts(url, channel, onNotify),
    close: () => client.end({ timeout: 5 }),
  };
}

/** How soon a LISTEN lost with its connection is tried again, and again while that fails. */
const RELISTEN_MS = 1000;

/**
 * LISTEN on a connection of its own that is subscribed again whenever it is lost (a database
 * restart, a fail-over), for as long as it takes. postgres.js's own `listen` tries once and
 * then gives up silently, so after an outage new mail would wait for the poll. Once subscribed
 * again `onNotify` is called: whatever was notified meanwhile was missed.
 */
async function listenAcrossRestarts(
  url: string,
  channel: string,
  onNotify: (payload?: string) => void,
): Promise<() => Promise<void>> {
  let stopped = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  // `onnotify` is the option postgres.js's own `listen` is built on; its types leave it out.
  const options: postgres.Options<Record<string, postgres.PostgresType>> & {
    onnotify(channel: string, payload: string): void;
  } = {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    fetch_types: false,
    onnotice: () => {},
    onnotify: (ch, payload) => {
      if (ch === channel) onNotify(payload);
    },
    onclose: () => again(),
  };
  const client = postgres(url, options);
  const subscribe = () => client`listen ${client(channel)}`;
  const again = () => {
    if (stopped) return;
    clearTimeout(retry);
    retry = setTimeout(() => {
      subscribe().then(
        () => onNotify(),
        () => again(),
      );
    }, RELISTEN_MS);
  };
  try {
    await subscribe();
  } catch (err) {
    stopped = true;
    await client.end({ timeout: 1 });
    throw err;
  }
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client.end({ timeout: 5 });
  };
}

async function openPglite(dataDir: string): Promise<Database> {
  // PGlite writes its files 0666 whatever the umask: the directory is what keeps others out.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const lock = acquireLock(lockPath(dataDir));
  try {
    // Handing PGlite its files explicitly is what lets `bun build --compile` embed them.
    const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
      WebAssembly.compile(await Bun.file(pgliteWasmPath).arrayBuffer()),
      WebAssembly.compile(await Bun.file(initdbWasmPath).arrayBuffer()),
    ]);
    const client = await PGlite.create({
      dataDir: join(dataDir, "db"),
      pgliteWasmModule,
      initdbWasmModule,
      fsBundle: Bun.file(fsBundlePath),
    });
    const db = drizzlePglite(client, { schema });
    return {
      db,
      kind: "pglite",
      driver: { kind: "pglite", db },
      ping: () => ping(db),
      async listen(channel, onNotify) {
        const unsubscribe = await client.listen(channel, onNotify);
        return () => unsubscribe();
      },
      async close() {
        try {
          await client.close();
        } finally {
          lock.release();
        }
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function ping(db: Db): Promise<boolean> {
  try {
    await Promise.race([
      db.execute(sql`select 1`),
      Bun.sleep(2000).then(() => Promise.reject(new Error("timeout"))),
    ]);
    return true;
  } catch {
    return false;
  }
}
