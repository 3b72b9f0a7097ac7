// drizzle runs every query through postgres.js's `unsafe(text, params, { prepare: false })`, and
// postgres.js sends an unprepared query with parameters as two round trips: Parse + Describe, wait
// for the parameter types, then Bind + Execute. Prepared, a statement seen before on a connection
// takes one. On the accept path (one group commit at a time) that second round trip was most of
// a commit's latency (bench/RESULTS.md, issue 16).
//
// Each prepared statement stays on its connection until the connection is recycled (postgres.js
// `max_lifetime`), ~2 KiB of server memory per parameter (measured on PostgreSQL 15). Statements
// whose text grows with a list (multi-row INSERTs, long IN lists) would each be kept in every
// size seen, so only statements with a few parameters are prepared; the rest keep two round trips.
import type postgres from "postgres";

/** Above this many parameters a statement is sent unprepared. */
export const PREPARE_MAX_PARAMETERS = 64;

type Unsafe = (query: string, params?: unknown[], options?: postgres.UnsafeQueryOptions) => unknown;
type WithTransaction = (...args: unknown[]) => unknown;

/** The client, with `unsafe` preparing small statements, also inside transactions and savepoints. */
export function preparingSmallStatements<T extends object>(client: T): T {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop === "unsafe") {
        const unsafe = value as Unsafe;
        return (query: string, params?: unknown[], options?: postgres.UnsafeQueryOptions) =>
          unsafe.call(target, query, params, {
            ...options,
            prepare: (params?.length ?? 0) <= PREPARE_MAX_PARAMETERS,
          });
      }
      if (prop === "begin" || prop === "savepoint") {
        const open = value as WithTransaction;
        // the callback is the last argument (an isolation level or savepoint name may come first)
        return (...args: unknown[]) => {
          const body = args.pop() as (tx: object) => unknown;
          return open.call(target, ...args, (tx: object) => body(preparingSmallStatements(tx)));
        };
      }
      return value;
    },
  });
}
