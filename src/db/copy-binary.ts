// The one field of the one row of `COPY (select <bytea>) TO STDOUT (FORMAT binary)`: PostgreSQL's
// binary copy format (https://www.postgresql.org/docs/15/sql-copy.html, "Binary Format"): a
// signature, flags and an extension area, then per row a field count and each field as a length
// and its bytes, then -1. Pure; the bytes are a view into the chunk they arrived in, not a copy.

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
