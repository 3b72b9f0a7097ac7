// PostgreSQL's binary copy format (https://www.postgresql.org/docs/15/sql-copy.html, "Binary
// Format"): a signature, flags and an extension area, then per row a field count and each field as
// a length and its bytes, then -1. Read: the one field of the one row of `COPY (select <bytea>) TO
// STDOUT (FORMAT binary)`, as a view into the chunk it arrived in. Written: rows for `COPY table
// FROM STDIN (FORMAT binary)`, bytea fields as their own bytes (no text form to make and parse).
// Pure.

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
/** Signature, flags (int32), header extension length (int32). */
const HEADER_OCTETS = SIGNATURE.length + 8;

/** What the data says: the field's bytes, no row at all, or more data needed to tell. */
export type CopiedField = { kind: "field"; bytes: Uint8Array } | { kind: "no-row" } | { kind: "short" };

export function firstField(data: Buffer): CopiedField {
  if (data.length < HEADER_OCTETS) return { kind: "short" };
  if (!data.subarray(0, SIGNATURE.length).equals(SIGNATURE))
    throw new Error("not PostgreSQL's binary COPY format");
  const row = HEADER_OCTETS + data.readUInt32BE(SIGNATURE.length + 4);
  if (data.length < row + 2) return { kind: "short" };
  const fields = data.readInt16BE(row);
  if (fields === -1) return { kind: "no-row" };
  if (fields !== 1) throw new Error(`binary COPY: ${fields} fields in a row, expected 1`);
  if (data.length < row + 6) return { kind: "short" };
  const length = data.readInt32BE(row + 2);
  if (length < 0) throw new Error("binary COPY: the field is NULL");
  const start = row + 6;
  if (data.length < start + length) return { kind: "short" };
  return { kind: "field", bytes: data.subarray(start, start + length) };
}

/** The column types rows can be written for, as drizzle's getSQLType() names them. */
export type CopyType = "text" | "integer" | "bytea" | "jsonb" | "timestamp with time zone";

const COPY_TYPES: readonly string[] = ["text", "integer", "bytea", "jsonb", "timestamp with time zone"];

export function isCopyType(type: string): type is CopyType {
  return COPY_TYPES.includes(type);
}

const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
const TRAILER = Buffer.from([0xff, 0xff]);

/**
 * The data of a binary COPY of `rows`, each a value per column of `types` (null: SQL NULL): text
 * as UTF-8, integer as int4, bytea as its bytes, jsonb as version 1 and the JSON text (a string),
 * timestamp with time zone as microseconds since 2000 (a Date). One buffer: postgres.js sends
 * each write as a message of its own. The fields are encoded first, for the size, then written
 * into it in place: no buffer per length word on the path of every accepted message.
 */
export function copyRows(types: readonly CopyType[], rows: readonly (readonly unknown[])[]): Buffer {
  let size = HEADER_OCTETS + TRAILER.length;
  const encoded = rows.map((row) => {
    if (row.length !== types.length)
      throw new Error(`binary COPY: ${row.length} values for ${types.length} columns`);
    size += 2;
    return row.map((value, i) => {
      const field = value === null || value === undefined ? undefined : fieldBytes(types[i]!, value);
      size += 4 + (field?.length ?? 0);
      return field;
    });
  });
  const out = Buffer.allocUnsafe(size);
  let at = SIGNATURE.copy(out, 0);
  at = out.writeInt32BE(0, at); // flags
  at = out.writeInt32BE(0, at); // header extension length
  for (const fields of encoded) {
    at = out.writeInt16BE(types.length, at);
    for (const field of fields) {
      at = out.writeInt32BE(field ? field.length : -1, at);
      if (field) {
        out.set(field, at);
        at += field.length;
      }
    }
  }
  TRAILER.copy(out, at);
  return out;
}

function fieldBytes(type: CopyType, value: unknown): Uint8Array {
  switch (type) {
    case "text":
      return Buffer.from(String(value));
    case "integer": {
      const b = Buffer.alloc(4);
      b.writeInt32BE(value as number);
      return b;
    }
    case "bytea":
      return value as Uint8Array;
    case "jsonb":
      return Buffer.concat([Buffer.from([1]), Buffer.from(value as string)]);
    case "timestamp with time zone": {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(BigInt((value as Date).getTime() - PG_EPOCH_MS) * 1000n);
      return b;
    }
  }
}
