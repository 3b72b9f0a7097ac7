import { expect, test } from "bun:test";
import { firstField } from "../../src/db/copy-binary.ts";

const signature = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const header = (extension = Buffer.alloc(0)) =>
  Buffer.concat([signature, int32(0), int32(extension.length), extension]);
const row = (bytes: Buffer) => Buffer.concat([int16(1), int32(bytes.length), bytes]);
const trailer = int16(-1);

test("the one field of the one row, as a view into the data", () => {
  const body = Buffer.from("Subject: hi\r\n\r\n\0\xff binary too\r\n", "latin1");
  const data = Buffer.concat([header(), row(body), trailer]);
  const field = firstField(data);
  expect(field.kind).toBe("field");
  if (field.kind !== "field") return;
  expect(Buffer.from(field.bytes).equals(body)).toBe(true);
  expect(field.bytes.buffer).toBe(data.buffer); // not a copy
});

test("a header extension is skipped; an empty field is an empty body", () => {
  const field = firstField(Buffer.concat([header(Buffer.from("ext!")), row(Buffer.alloc(0)), trailer]));
  expect(field).toEqual({ kind: "field", bytes: expect.any(Uint8Array) });
  expect(field.kind === "field" && field.bytes.length).toBe(0);
});

test("no row (the message is gone): the trailer right after the header", () => {
  expect(firstField(Buffer.concat([header(), trailer]))).toEqual({ kind: "no-row" });
});

test("data that stops anywhere before the field's end asks for more", () => {
  const data = Buffer.concat([header(), row(Buffer.from("0123456789")), trailer]);
  for (const cut of [0, 5, 18, 19, 20, 22, 24, 25, 30, 34])
    expect(firstField(data.subarray(0, cut)).kind).toBe("short");
  expect(firstField(data.subarray(0, 35)).kind).toBe("field");
});

test("not the binary format, two fields, or a NULL field: an error naming it", () => {
  expect(() => firstField(Buffer.from("raw text, not a COPY header"))).toThrow(/binary COPY format/);
  expect(() => firstField(Buffer.concat([header(), int16(2), int32(0), int32(0)]))).toThrow(/2 fields/);
  expect(() => firstField(Buffer.concat([header(), int16(1), int32(-1)]))).toThrow(/NULL/);
});
