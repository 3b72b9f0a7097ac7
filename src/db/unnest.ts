// INSERT ... SELECT * FROM unnest($1::type[], $2::type[], ...): one parameter per column, whatever
// the number of rows, so the statement's text never changes and it is prepared once per
// connection (see prepared.ts), where a multi-row VALUES list is a new statement for every row
// count. Zero rows insert nothing, so a statement can always carry the INSERT.
//
// bytea columns travel as base64 text (see base64ArrayLiteral). Each array goes as the text of an
// array literal: postgres.js types an array parameter by its
// first element (a Buffer makes the whole parameter bytea, a boolean bool), which the ::type[]
// cast then refuses; a string parameter is typed by the cast alone.
//
// The text is made once and the statement built flat (text, parameter, text, ...): drizzle walks
// nested SQL objects (tables, identifiers, joins) anew on every build, and these statements run
// on every commit.
import { getTableColumns, getTableName, is, SQL, type SQLChunk, StringChunk } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import { bufferView } from "../bytes.ts";

/** Text, or a parameter's value. */
export type StatementPart = string | { value: unknown };

export class UnnestedInsert<T extends PgTable> {
  private readonly columns: { key: string; column: PgColumn; binary: boolean; cast: string }[];
  private readonly head: string;
  private readonly tail: string;

  /**
   * With `only`, each row comes with a key of SQL type `only.type` that is not inserted, and only
   * the rows whose key `k` meets `only.where` (SQL text naming `k`) are: a statement's later CTEs
   * write rows for what its first one changed.
   */
  constructor(
    table: T,
    keys: readonly (keyof T["$inferInsert"] & string)[],
    private readonly only?: { type: string; where: string },
  ) {
    this.columns = namedColumns(table, keys).map(({ key, column }, i) => {
      const binary = column.getSQLType() === "bytea";
      const type = binary ? "text" : column.getSQLType();
      return { key, column, binary, cast: `::${type}[]${i < keys.length - 1 ? ", " : ")"}` };
    });
    const names = this.columns.map(({ column }) => `"${column.name}"`).join(", ");
    const select = this.columns
      .map(({ binary }, i) => (binary ? `decode(c${i}, 'base64')` : `c${i}`))
      .join(", ");
    this.head = `insert into "${getTableName(table)}" (${names}) select ${select} from unnest(`;
    const aliases = this.columns.map((_, i) => `c${i}`);
    this.tail = only ? ` as u(k, ${aliases.join(", ")}) where ${only.where}` : ` as u(${aliases.join(", ")})`;
  }

  /** The statement's parts for these rows (and their keys, when made with `only`). */
  parts(rows: readonly T["$inferInsert"][], keys: readonly unknown[] = []): StatementPart[] {
    const parts: StatementPart[] = [this.head];
    if (this.only) parts.push({ value: arrayLiteral(keys) }, `::${this.only.type}[], `);
    for (const { key, column, binary, cast } of this.columns) {
      const values = rows.map((row) => {
        const value = insertValue(row, key, column);
        return value === null ? null : column.mapToDriverValue(value);
      });
      parts.push({ value: binary ? base64ArrayLiteral(values) : arrayLiteral(values) }, cast);
    }
    parts.push(this.tail);
    return parts;
  }
}

/** The columns `keys` name in `table`, in that order; a key that names none is a programming error. */
export function namedColumns<T extends PgTable>(
  table: T,
  keys: readonly (keyof T["$inferInsert"] & string)[],
): { key: string; column: PgColumn }[] {
  const all = getTableColumns(table) as Record<string, PgColumn>;
  return keys.map((key) => {
    const column = all[key];
    if (column === undefined) throw new Error(`${getTableName(table)}.${key}: no such column`);
    return { key, column };
  });
}

/**
 * What a row inserts in `column` (null: NULL). A default made by SQL (now(), a sequence) cannot
 * travel in an array or a COPY: the caller gives the value.
 */
export function insertValue(row: object, key: string, column: PgColumn): unknown {
  const value =
    (row as Record<string, unknown>)[key] ?? (is(column.default, SQL) ? undefined : column.default);
  return value ?? null;
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

/** The same statement as text with $n placeholders and its parameters, for postgres.js itself. */
export function queryOf(parts: readonly StatementPart[]): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  const text = parts
    .map((part) => (typeof part === "string" ? part : `$${params.push(part.value)}`))
    .join("");
  return { text, params };
}

/** PostgreSQL's text form of a one-dimensional array (NULL, or each element quoted). */
export function arrayLiteral(values: readonly unknown[]): string {
  return `{${values.map((v) => (v === null ? "NULL" : quoted(v))).join(",")}}`;
}

/**
 * Binary values as base64 text, decoded by the statement: a third shorter than bytea's hex form,
 * and the body is most of what a commit sends. Base64 needs no escaping inside the quotes.
 */
function base64ArrayLiteral(values: readonly unknown[]): string {
  return `{${values.map((v) => (v instanceof Uint8Array ? `"${bufferView(v).toString("base64")}"` : "NULL")).join(",")}}`;
}

function quoted(value: unknown): string {
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
