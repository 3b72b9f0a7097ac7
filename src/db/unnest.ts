// INSERT ... SELECT * FROM unnest($1::type[], $2::type[], ...): one parameter per column, whatever
// the number of rows, so the statement's text never changes and it is prepared once per
// connection (see prepared.ts), where a multi-row VALUES list is a new statement for every row
// count. Zero rows insert nothing, so a statement can always carry the INSERT.
//
// Each array goes as the text of an array literal: postgres.js types an array parameter by its
// first element (a Buffer makes the whole parameter bytea, a boolean bool), which the ::type[]
// cast then refuses; a string parameter is typed by the cast alone.
//
// The text is made once and the statement built flat (text, parameter, text, ...): drizzle walks
// nested SQL objects (tables, identifiers, joins) anew on every build, and these statements run
// on every commit.
import { getTableColumns, getTableName, is, SQL, type SQLChunk, StringChunk } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";

/** Text, or a parameter's value. */
export type StatementPart = string | { value: unknown };

export class UnnestedInsert<T extends PgTable> {
  private readonly columns: { key: string; column: PgColumn; cast: string }[];
  private readonly head: string;

  constructor(table: T, keys: readonly (keyof T["$inferInsert"] & string)[]) {
    const all = getTableColumns(table) as Record<string, PgColumn>;
    this.columns = keys.map((key, i) => {
      const column = all[key];
      if (column === undefined) throw new Error(`${getTableName(table)}.${key}: no such column`);
      return { key, column, cast: `::${column.getSQLType()}[]${i < keys.length - 1 ? ", " : ")"}` };
    });
    const names = this.columns.map(({ column }) => `"${column.name}"`).join(", ");
    this.head = `insert into "${getTableName(table)}" (${names}) select * from unnest(`;
  }

  /** The statement's parts for these rows. */
  parts(rows: readonly T["$inferInsert"][]): StatementPart[] {
    const parts: StatementPart[] = [this.head];
    for (const { key, column, cast } of this.columns) {
      const values = rows.map((row) => {
        // a default made by SQL (now(), a sequence) cannot travel in an array: the caller gives the value
        const value =
          (row as Record<string, unknown>)[key] ?? (is(column.default, SQL) ? undefined : column.default);
        return value === undefined || value === null ? null : column.mapToDriverValue(value);
      });
      parts.push({ value: arrayLiteral(values) }, cast);
    }
    return parts;
  }
}

/** One flat statement from its parts. */
export function flatStatement(parts: readonly StatementPart[]): SQL {
  const chunks: SQLChunk[] = [];
  let text = "";
  for (const part of parts) {
    if (typeof part === "string") {
      text += part;
    } else {
      chunks.push(new StringChunk(text), part.value as SQLChunk);
      text = "";
    }
  }
  chunks.push(new StringChunk(text));
  return new SQL(chunks);
}

/** PostgreSQL's text form of a one-dimensional array (NULL, or each element quoted). */
export function arrayLiteral(values: readonly unknown[]): string {
  return `{${values.map((v) => (v === null ? "NULL" : quoted(v))).join(",")}}`;
}

function quoted(value: unknown): string {
  // bytea's hex form: its one backslash escaped, and no need to scan the hex digits for more
  if (value instanceof Uint8Array)
    return `"\\\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex")}"`;
  const text =
    typeof value === "boolean"
      ? value
        ? "t"
        : "f"
      : value instanceof Date
        ? value.toISOString()
        : String(value);
  return `"${text.replace(/[\\"]/g, "\\$&")}"`;
}
