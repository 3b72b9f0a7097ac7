// Bodies read back for delivery: small ones with their row, big ones on their own (a binary COPY from
// PostgreSQL, pieces from PGlite: two big ones in a row is the case where a COPY stream that ended
// paused left its connection deaf). On both drivers, since each decodes bytea its own way.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, inArray, sql } from "drizzle-orm";
import { migrate } from "../../src/db/migrate.ts";
import type { Database } from "../../src/db/open.ts";
import { messages } from "../../src/db/schema.ts";
import { BODY_PIECE_OCTETS, readBody } from "../../src/queue/bodies.ts";
import { loadMessages } from "../../src/queue/claim.ts";
import { databaseDrivers } from "../helpers/pg.ts";

/** Every octet value, in an order that repeats only after many pieces. */
function octets(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + (i >> 11)) & 0xff;
  return out;
}

describe.each(databaseDrivers())("message bodies on %s", (driver, open) => {
  let database: Database;
  beforeAll(async () => {
    database = await open();
    await migrate(database);
  });
  afterAll(async () => {
    await database?.close();
  });

  async function store(id: string, raw: Uint8Array): Promise<void> {
    await database.db
      .insert(messages)
      .values({ id, direction: "inbound", mailFrom: "a@b.test", size: raw.length, raw });
  }

  test("small, exactly one piece, one octet over and several pieces each come back octet for octet", async () => {
    const sizes = {
      small: 10,
      piece: BODY_PIECE_OCTETS,
      over: BODY_PIECE_OCTETS + 1,
      big: 3 * BODY_PIECE_OCTETS + 12345,
    };
    for (const [id, n] of Object.entries(sizes)) await store(id, octets(n));
    const loaded = await loadMessages(database.db, Object.keys(sizes));
    expect(loaded.size).toBe(4);
    for (const [id, n] of Object.entries(sizes)) {
      const raw = loaded.get(id)!.raw;
      expect(raw.length).toBe(n);
      expect(Buffer.from(raw).equals(Buffer.from(octets(n)))).toBe(true);
    }
  });

  test("a big body stored compressed and one that cannot be each come back octet for octet", async () => {
    // random octets do not compress: stored as they are, read by substrings of the TOAST chunks;
    // a text decompressed once for all its pieces
    const noise = new Uint8Array(2 * BODY_PIECE_OCTETS + 7);
    for (let at = 0; at < noise.length; at += 65536) crypto.getRandomValues(noise.subarray(at, at + 65536));
    const text = Buffer.from("A line of a long text that compresses well.\r\n".repeat(70000));
    await store("noise", noise);
    await store("text", text);
    if (driver === "postgres") {
      const stored = await database.db
        .select({ id: messages.id, compressed: sql<boolean>`pg_column_size(raw) < octet_length(raw)` })
        .from(messages)
        .where(inArray(messages.id, ["noise", "text"]))
        .orderBy(messages.id);
      expect(stored).toEqual([
        { id: "noise", compressed: false },
        { id: "text", compressed: true },
      ]);
    }
    expect(Buffer.from((await readBody(database.db, "noise", noise.length))!).equals(noise)).toBe(true);
    expect(Buffer.from((await readBody(database.db, "text", text.length))!).equals(text)).toBe(true);
  });

  test("a body of exactly two pieces, and one whose id has a quote, come back whole", async () => {
    const two = octets(2 * BODY_PIECE_OCTETS);
    await store("two", two);
    await store("it's", octets(BODY_PIECE_OCTETS + 3));
    expect(Buffer.from((await readBody(database.db, "two", two.length))!).equals(Buffer.from(two))).toBe(
      true,
    );
    expect((await readBody(database.db, "it's", BODY_PIECE_OCTETS + 3))?.length).toBe(BODY_PIECE_OCTETS + 3);
  });

  test("a length that is not the body's: an error naming it, and the database answers on", async () => {
    await store("sized", octets(BODY_PIECE_OCTETS + 100));
    for (const wrong of [BODY_PIECE_OCTETS + 99, BODY_PIECE_OCTETS + 101, 5 * BODY_PIECE_OCTETS])
      await expect(readBody(database.db, "sized", wrong)).rejects.toThrow(/message sized/);
    const [row] = await database.db.select({ n: sql<number>`1 + 1` }).from(sql`(select 1) one`);
    expect(Number(row!.n)).toBe(2);
  });

  test("a big message removed before its pieces are read is not loaded; the others are", async () => {
    await store("gone", octets(2 * BODY_PIECE_OCTETS));
    await database.db.delete(messages).where(eq(messages.id, "gone"));
    expect(await readBody(database.db, "gone", 2 * BODY_PIECE_OCTETS)).toBeUndefined();
    const loaded = await loadMessages(database.db, ["gone", "small"]);
    expect([...loaded.keys()]).toEqual(["small"]);
  });
});
