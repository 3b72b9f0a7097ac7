// PostgreSQL's binary copy format (https://www.postgresql.org/docs/15/sql-copy.html, "Binary
// Format"): a signature, flags and an extension area, then per row a field count and each field as
// a length and its bytes, then -1. Read: rows of `COPY (select ...) TO STDOUT (FORMAT binary)`,
// their fields as views into the chunk they arrived in (or into the join of a row cut across
// chunks). Written: rows for `COPY table FROM STDIN (FORMAT binary)`, bytea fields as their own
// bytes (no text form to make and parse). Pure.

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
/** Signature, flags (int32), header extension length (int32). */
const HEADER_OCTETS = SIGNATURE.length + 8;

/**
 * The rows of `COPY ... TO STDOUT (FORMAT binary)` as its data arrives, in chunks cut anywhere:
 * each row is its fields, as views into the data (a NULL field is an error: we read none). Bytes
 * of a row cut across chunks are held and joined once there are enough of them to go on, not at
 * every chunk.
 */
export class CopyRowReader {
  private held: Buffer[] = [];
  private heldOctets = 0;
  /** Octets to hold before reading can go on. */
  private need = HEADER_OCTETS;
  private headerRead = false;
  private trailerRead = false;

  push(chunk: Buffer): Buffer[][] {
    if (this.trailerRead && chunk.length > 0) throw new Error("binary COPY: data after the end of the rows");
    this.held.push(chunk);
    this.heldOctets += chunk.length;
    if (this.heldOctets < this.need) return [];
    const data = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldOctets);
    let at = 0;
    if (!this.headerRead) {
      if (!data.subarray(0, SIGNATURE.length).equals(SIGNATURE))
        throw new Error("not PostgreSQL's binary COPY format");
      const start = HEADER_OCTETS + data.readUInt32BE(SIGNATURE.length + 4);
      if (data.length < start) {
        this.hold(data, 0, start);
        return [];
      }
      at = start;
      this.headerRead = true;
    }
    const rows: Buffer[][] = [];
    for (;;) {
      const next = rowAt(data, at);
      if ("fields" in next) {
        rows.push(next.fields);
        at = next.end;
        continue;
      }
      if ("trailer" in next) {
        if (next.trailer !== data.length) throw new Error("binary COPY: data after the end of the rows");
        this.trailerRead = true;
        this.hold(data, data.length, data.length);
      } else this.hold(data, at, next.need);
      return rows;
    }
  }

  /** Keeps `data` from `at` on, to read on once there are `need` octets of it (counted from 0). */
  private hold(data: Buffer, at: number, need: number): void {
    this.held = at < data.length ? [data.subarray(at)] : [];
    this.heldOctets = data.length - at;
    this.need = need - at;
  }

  /** Says that the data has ended: throws when it ended before the last row did. */
  end(): void {
    if (!this.trailerRead) throw new Error("binary COPY: the data ended inside a row");
  }
}

type RowRead = { fields: Buffer[]; end: number } | { need: number } | { trailer: number };

function rowAt(data: Buffer, at: number): RowRead {
  if (data.length < at + 2) return { need: at + 2 };
  const count = data.readInt16BE(at);
  if (count === -1) return { trailer: at + 2 };
  if (count < 0) throw new Error(`binary COPY: a row of ${count} fields`);
  const fields: Buffer[] = [];
  let p = at + 2;
  for (let i = 0; i < count; i++) {
    if (data.length < p + 4) return { need: p + 4 };
    const length = data.readInt32BE(p);
    p += 4;
    if (length < 0) throw new Error("binary COPY: a NULL field");
    if (data.length < p + length) return { need: p + length };
    fields.push(data.subarray(p, p + length));
    p += length;
  }
  return { fields, end: p };
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
