// Reading message bodies back for delivery. The driver receives bytea as hex text and makes a
// string of it before the bytes: a body read whole costs ~7x its size in garbage (a 25 MiB
// message: +175 MiB at the peak, measured). Big bodies are read in pieces into one buffer of
// their size instead, so what is multiplied is a piece, and the collector can free each piece's
// garbage while the next one comes (bench/bigmail.sh: serve's peak growth per body byte 7.1 ->
// 4.0 for one 25 MiB message, 3.7 -> 2.6 for eight).
import { eq, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { messages } from "../db/schema.ts";

/** Bodies up to this size come with their row; bigger ones are read in pieces of this size. */
export const BODY_PIECE_OCTETS = 1024 * 1024;

/** The body when it is small enough to come with its row, else null (read it with `readBody`). */
export const smallBody: SQL<Uint8Array | null> = sql<Uint8Array | null>`case when octet_length(${messages.raw}) <= ${sql.raw(String(BODY_PIECE_OCTETS))} then ${messages.raw} end`;

/** The body's stored length in octets. */
export const bodyLength: SQL<number> = sql<number>`octet_length(${messages.raw})`;

/**
 * The body of message `id`, `length` octets, read piece by piece (a stored body never changes).
 * Undefined when the message is removed meanwhile.
 */
export async function readBody(db: Db, id: string, length: number): Promise<Uint8Array | undefined> {
  const body = new Uint8Array(length);
  for (let at = 0; at < length; at += BODY_PIECE_OCTETS) {
    const [row] = await db
      .select({ piece: sql<Uint8Array>`substring(${messages.raw} from ${at + 1} for ${BODY_PIECE_OCTETS})` })
      .from(messages)
      .where(eq(messages.id, id));
    if (!row) return undefined;
    body.set(row.piece, at);
  }
  return body;
}
