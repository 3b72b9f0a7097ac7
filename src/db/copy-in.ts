// Rows into a table by `COPY ... FROM STDIN (FORMAT binary)`, then a statement, in one transaction,
// on postgres.js (PGlite has no COPY from a stream: callers keep a statement for it). A bytea
// value travels as its own bytes: the accept statement sends bodies as base64 text in an array
// literal, which Bun builds and encodes and PostgreSQL parses and decodes (bench/RESULTS.md,
// issue 16).
//
// postgres.js never settles the stream of a COPY that PostgreSQL refuses after the data's end (a
// constraint, a bad value) or whose connection drops then (porsager/postgres#1173, open): the
// transaction would wait forever, and every commit behind it. So once the data and its end are
// sent (CopyDone: up to there postgres.js reports failures itself), the answer is awaited at most
// `guardMs`; past it the transaction is given up, its ROLLBACK queued behind the COPY if that
// still runs, and the caller writes the rows another way.
import { getTableName } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import type postgres from "postgres";
import { type CopyType, copyRows, isCopyType } from "./copy-binary.ts";
import type { Db } from "./open.ts";
import { insertValue, namedColumns } from "./unnest.ts";

export class CopiedInsert<T extends PgTable> {
  /** `copy "table" (columns) from stdin (format binary)` */
  readonly statement: string;
  private readonly columns: { key: string; column: PgColumn; type: CopyType }[];

  constructor(table: T, keys: readonly (keyof T["$inferInsert"] & string)[]) {
    this.columns = namedColumns(table, keys).map(({ key, column }) => {
      const type = column.getSQLType();
      if (!isCopyType(type))
        throw new Error(`${getTableName(table)}.${key}: ${type} is not written by COPY here`);
      return { key, column, type };
    });
    const names = this.columns.map(({ column }) => `"${column.name}"`).join(", ");
    this.statement = `copy "${getTableName(table)}" (${names}) from stdin (format binary)`;
  }

  /**
   * The COPY data of these rows, or undefined when a value cannot go this way: one PostgreSQL
   * refuses (refusedText), as a refused COPY costs the guard's wait (see above).
   */
  data(rows: readonly T["$inferInsert"][]): Buffer | undefined {
    const values: unknown[][] = [];
    for (const row of rows) {
      const out: unknown[] = [];
      for (const { key, column, type } of this.columns) {
        const value = insertValue(row, key, column);
        if (value === null) {
          out.push(null);
          continue;
        }
        const driver = type === "jsonb" ? column.mapToDriverValue(value) : value;
        if ((type === "text" || type === "jsonb") && refusedText.test(String(driver))) return undefined;
        out.push(driver);
      }
      values.push(out);
    }
    return copyRows(
      this.columns.map((c) => c.type),
      values,
    );
  }
}

/**
 * What PostgreSQL refuses in text or jsonb (and the statement's way too): a NUL, as itself or as
 * a JSON escape, and a lone surrogate, which JSON.stringify writes as an escape.
 */
const refusedText = /\0|\\u0000|\\ud[89a-f]/i;

/** The client a COPY needs when `db` runs on postgres.js (drizzle keeps it as `$client`). */
export function copyingClient(db: Db): postgres.Sql | undefined {
  const client = (db as { $client?: { begin?: unknown } }).$client;
  return typeof client?.begin === "function" ? (client as postgres.Sql) : undefined;
}

/** The COPY's end did not come in time (see above): the transaction was given up. */
export class CopyUnsettled extends Error {
  constructor(guardMs: number) {
    super(`COPY not answered within ${guardMs} ms`);
  }
}

/** Copies `data` by `statement`, then runs `then`, in one transaction. */
export async function copyThen(
  client: postgres.Sql,
  copy: { statement: string; data: Buffer },
  then: { text: string; params: unknown[] },
  guardMs: number,
): Promise<void> {
  await client.begin(async (tx) => {
    const stream = await tx.unsafe(copy.statement).writable();
    await new Promise<void>((resolve, reject) => {
      let guard: ReturnType<typeof setTimeout> | undefined;
      const settle = (err?: Error | null) => {
        clearTimeout(guard);
        if (err) reject(err);
        else resolve();
      };
      stream.on("error", settle);
      // Not before the data is handed over: a guard that fired while postgres.js still sends it
      // would find its ROLLBACK refused (COPY_IN_PROGRESS) and the transaction left open.
      stream.write(copy.data, (err) => {
        if (err) return settle(err);
        stream.end((err?: Error | null) => settle(err));
        guard = setTimeout(() => settle(new CopyUnsettled(guardMs)), guardMs);
      });
    });
    await tx.unsafe(then.text, then.params as postgres.ParameterOrJSON<never>[]);
  });
}
