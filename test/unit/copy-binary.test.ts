import { expect, test } from "bun:test";
import { CopyRowReader } from "../../src/db/copy-binary.ts";

const signature = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const header = (extension = Buffer.alloc(0)) =>
  Buffer.concat([signature, int32(0), int32(extension.length), extension]);
const row = (...fields: Buffer[]) =>
  Buffer.concat([int16(fields.length), ...fields.flatMap((f) => [int32(f.length), f])]);
const trailer = int16(-1);

/** What a reader makes of `data` handed over in the given chunks: rows as text, and the views' buffers. */
function readIn(chunks: Buffer[]): { rows: string[][]; reader: CopyRowReader; buffers: ArrayBufferLike[] } {
  const reader = new CopyRowReader();
  const rows: string[][] = [];
  const buffers: ArrayBufferLike[] = [];
  for (const chunk of chunks)
    for (const fields of reader.push(chunk)) {
      rows.push(fields.map((f) => f.toString("latin1")));
      buffers.push(...fields.map((f) => f.buffer));
    }
  return { rows, reader, buffers };
}

const body = Buffer.from("Subject: hi\r\n\r\n\0\xff binary too\r\n", "latin1");
const copied = Buffer.concat([header(), row(int32(1), body), row(int32(99), Buffer.from("second")), trailer]);

test("rows as they arrive, fields as views into the chunk (as PostgreSQL sends them: a row a message)", () => {
  const chunks = [
    Buffer.concat([header(), row(int32(1), body)]),
    row(int32(99), Buffer.from("second")),
    trailer,
  ];
  const { rows, reader, buffers } = readIn(chunks);
  expect(rows).toEqual([
    ["\0\0\0\x01", body.toString("latin1")],
    ["\0\0\0c", "second"],
  ]);
  expect(buffers.slice(0, 2)).toEqual([chunks[0]!.buffer, chunks[0]!.buffer]); // not copies
  expect(() => reader.end()).not.toThrow();
});

test("data cut at every octet, or in two anywhere, reads the same rows", () => {
  const whole = readIn([copied]).rows;
  expect(whole.length).toBe(2);
  const octets = [...copied].map((b) => Buffer.from([b]));
  expect(readIn(octets).rows).toEqual(whole);
  for (let cut = 0; cut <= copied.length; cut++)
    expect(readIn([copied.subarray(0, cut), copied.subarray(cut)]).rows).toEqual(whole);
});

test("a row cut into many chunks is joined once there is enough of it, not at every chunk", () => {
  const big = Buffer.alloc(64 * 1024, "x");
  const data = Buffer.concat([header(), row(big), trailer]);
  const reader = new CopyRowReader();
  const concat = Buffer.concat;
  let joins = 0;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    joins++;
    return concat(list, total);
  }) as typeof Buffer.concat;
  try {
    const rows: Buffer[][] = [];
    for (let at = 0; at < data.length; at += 1000) rows.push(...reader.push(data.subarray(at, at + 1000)));
    expect(rows.length).toBe(1);
    expect(rows[0]![0]!.equals(big)).toBe(true);
  } finally {
    Buffer.concat = concat;
  }
  expect(joins).toBeLessThan(6); // the header, the field's length, the field, the trailer
});

test("a header extension is skipped; an empty field is empty; no row at all is no row", () => {
  expect(readIn([Buffer.concat([header(Buffer.from("ext!")), row(Buffer.alloc(0)), trailer])]).rows).toEqual([
    [""],
  ]);
  const none = readIn([Buffer.concat([header(), trailer])]);
  expect(none.rows).toEqual([]);
  expect(() => none.reader.end()).not.toThrow();
});

test("data that ends before the trailer is cut short", () => {
  for (const cut of [0, 5, 19, 25, copied.length - 1]) {
    const { reader } = readIn([copied.subarray(0, cut)]);
    expect(() => reader.end()).toThrow(/ended inside a row/);
  }
});

test("not the binary format, a NULL field, or data after the trailer: an error naming it", () => {
  expect(() => readIn([Buffer.from("raw text, not a COPY header")])).toThrow(/binary COPY format/);
  expect(() => readIn([Buffer.concat([header(), int16(1), int32(-1)])])).toThrow(/NULL/);
  expect(() => readIn([Buffer.concat([copied, int16(1)])])).toThrow(/after the end/);
  expect(() => readIn([copied, int16(1)])).toThrow(/after the end/);
});
