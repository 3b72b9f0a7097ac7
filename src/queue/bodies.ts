// Reading message bodies back for delivery. postgres.js receives bytea as hex text and makes a
// string of it before the bytes: a body read whole costs ~7x its size in garbage (a 25 MiB
// message: +175 MiB at the peak, measured). So a big body is read another way, into one buffer
// of its size, a piece at a time, so that only a piece is ever multiplied: from PostgreSQL by a
// binary COPY of its pieces as rows (the stored bytes as they are, no text form), from PGlite (no
// COPY to a stream) by a query per piece. bench/bigmail.sh has the figures.
import { eq, type SQL, sql } from "drizzle-orm";
import type postgres from "postgres";
import { CopyRowReader } from "../db/copy-binary.ts";
import { copyingClient } from "../db/copy-in.ts";
import type { Db } from "../db/open.ts";
import { messages } from "../db/schema.ts";

/** Bodies up to this size come with their row; bigger ones are read on their own, in pieces of this size. */
export const BODY_PIECE_OCTETS = 1024 * 1024;

/** The body when it is small enough to come with its row, else null (read it with `readBody`). */
export const smallBody: SQL<Uint8Array | null> = sql<Uint8Array | null>`case when octet_length(${messages.raw}) <= ${sql.raw(String(BODY_PIECE_OCTETS))} then ${messages.raw} end`;

/** The body's stored length in octets. */
export const bodyLength: SQL<number> = sql<number>`octet_length(${messages.raw})`;

/**
 * The body of message `id`, `length` octets (a stored body never changes; more than none).
 * Undefined when the message is removed meanwhile.
 */
export async function readBody(db: Db, id: string, length: number): Promise<Uint8Array | undefined> {
  const client = copyingClient(db);
  return client ? copyBody(client, id, length) : readPieces(db, id, length);
}

async function copyBody(client: postgres.Sql, id: string, length: number): Promise<Uint8Array | undefined> {
  // COPY takes no parameters: the id is a literal (quotes doubled, standard_conforming_strings)
  const literal = `'${id.replaceAll("'", "''")}'`;
  const stream = await client.unsafe(piecesCopy(literal)).readable();
  const body = new Uint8Array(length);
  const rows = new CopyRowReader();
  let filled = 0;
  let failure: unknown;
  // Flowing ('data'), not iterated: a paused stream that fills up pauses postgres.js's socket, and
  // one that ends paused leaves it so (the connection's next query never hears back). So a bad
  // piece is remembered and the rest let through, not thrown into postgres.js's socket handler.
  await new Promise<void>((resolve, reject) => {
    stream.on("data", (chunk: Buffer) => {
      if (failure) return;
      try {
        for (const row of rows.push(chunk)) filled += placePiece(body, row, id);
        collectAfter(chunk.length);
      } catch (err) {
        failure = err;
      }
    });
    stream.on("end", resolve);
    stream.on("error", reject);
    // after "end" or "error" this changes nothing; alone, it would leave the read waiting forever
    stream.on("close", () => reject(new Error(`message ${id}: the copy of its body stopped`)));
  });
  if (failure) throw failure;
  rows.end();
  if (filled === 0) return undefined;
  if (filled !== length) throw new Error(`message ${id}: ${filled} of its body's ${length} octets came back`);
  return body;
}

/**
 * A COPY of a body's pieces as rows (offset from 1, piece): postgres.js gathers each row whole
 * before handing it on, so a piece at a time is doubled, not the whole body. Substrings of a body
 * stored uncompressed are read from its TOAST chunks alone; a compressed one is decompressed once
 * for all its pieces, since a substring of it decompresses from the start (a 27.9 MB text of
 * numbered lines, lz4 to 2.1 MB: 1.0 s of the server's CPU by substrings, 0.16 s once; a text
 * compressing less loses less). `offset 0` keeps the subquery whole: inlined, its CASE is
 * computed again for every piece and in generate_series (4.3 s for a 23 MB pglz body).
 */
function piecesCopy(idLiteral: string): string {
  const body = "case when pg_column_size(raw) < octet_length(raw) then raw || ''::bytea else raw end";
  return `copy (select at, substring(b.raw from at for ${BODY_PIECE_OCTETS})
    from (select ${body} as raw from messages where id = ${idLiteral} offset 0) b,
      generate_series(1, octet_length(b.raw), ${BODY_PIECE_OCTETS}) at) to stdout (format binary)`;
}

/** Copies a row of `piecesCopy` into the body where it belongs; its length. */
function placePiece(body: Uint8Array, row: Buffer[], id: string): number {
  const [at, piece] = row;
  if (row.length !== 2 || at?.length !== 4 || !piece)
    throw new Error(`message ${id}: a body piece of an unknown form`);
  const offset = at.readInt32BE(0) - 1;
  if (offset < 0 || offset + piece.length > body.length)
    throw new Error(
      `message ${id}: a body piece at ${offset} of ${piece.length} octets is outside its ${body.length}`,
    );
  body.set(piece, offset);
  return piece.length;
}

async function readPieces(db: Db, id: string, length: number): Promise<Uint8Array | undefined> {
  const body = new Uint8Array(length);
  for (let at = 0; at < length; at += BODY_PIECE_OCTETS) {
    const [row] = await db
      .select({
        piece: sql<Uint8Array>`substring(${messages.raw} from ${at + 1} for ${BODY_PIECE_OCTETS})`,
        total: bodyLength,
      })
      .from(messages)
      .where(eq(messages.id, id));
    if (!row) return undefined;
    if (row.total !== length)
      throw new Error(`message ${id}: its body is ${row.total} octets, not ${length}`);
    body.set(row.piece, at);
    collectAfter(row.piece.length);
  }
  return body;
}

/** Octets read into bodies since the last collection. */
let readSinceCollection = 0;
/** Measured (bench/bigmail.sh, PostgreSQL): a lone 25 MiB body 2.7-2.8x its size without, 1.5x with. */
const COLLECT_EVERY_OCTETS = 4 * 1024 * 1024;

/**
 * Collects garbage after every few MiB of body read. Each octet read from PostgreSQL leaves about
 * two behind (the socket's read buffers, and the message postgres.js assembles from them; PGlite's
 * results are copies too), and JSC collects only after some 30 MiB of new allocations, its
 * allocator reusing the space later still. Bun.gc(true) does both at once (JSC's fullGC alone
 * left 1.8x). A forced collection takes 10-17 ms of this thread in `serve`, about six per 25
 * MiB body; only bodies over BODY_PIECE_OCTETS come this way.
 */
function collectAfter(octets: number): void {
  readSinceCollection += octets;
  if (readSinceCollection < COLLECT_EVERY_OCTETS) return;
  readSinceCollection = 0;
  Bun.gc(true);
}
