// Reading message bodies back for delivery. postgres.js receives bytea as hex text and makes a
// string of it before the bytes: a body read whole costs ~7x its size in garbage (a 25 MiB
// message: +175 MiB at the peak, measured). So big bodies are read another way: from PostgreSQL
// with a binary COPY, which sends the stored bytes as they are, and the body is a view into the
// very buffer they arrived in; from PGlite (no COPY to a stream) in pieces into one buffer of
// their size, so only a piece at a time is multiplied. bench/bigmail.sh: serve's peak growth for
// eight 25 MiB messages in flight 3.3x -> 1.5x their size.
import { eq, type SQL, sql } from "drizzle-orm";
import type postgres from "postgres";
import { firstField } from "../db/copy-binary.ts";
import { copyingClient } from "../db/copy-in.ts";
import type { Db } from "../db/open.ts";
import { messages } from "../db/schema.ts";

/** Bodies up to this size come with their row; bigger ones are read on their own, in pieces of this size from PGlite. */
export const BODY_PIECE_OCTETS = 1024 * 1024;

/** The body when it is small enough to come with its row, else null (read it with `readBody`). */
export const smallBody: SQL<Uint8Array | null> = sql<Uint8Array | null>`case when octet_length(${messages.raw}) <= ${sql.raw(String(BODY_PIECE_OCTETS))} then ${messages.raw} end`;

/** The body's stored length in octets. */
export const bodyLength: SQL<number> = sql<number>`octet_length(${messages.raw})`;

/**
 * The body of message `id`, `length` octets (a stored body never changes). Undefined when the
 * message is removed meanwhile.
 */
export async function readBody(db: Db, id: string, length: number): Promise<Uint8Array | undefined> {
  const client = copyingClient(db);
  return client ? copyBody(client, id) : readPieces(db, id, length);
}

async function copyBody(client: postgres.Sql, id: string): Promise<Uint8Array | undefined> {
  // COPY takes no parameters: the id is a literal (quotes doubled, standard_conforming_strings)
  const literal = `'${id.replaceAll("'", "''")}'`;
  const stream = await client
    .unsafe(`copy (select raw from messages where id = ${literal}) to stdout (format binary)`)
    .readable();
  // Flowing ('data'), not iterated: a paused stream that fills up pauses postgres.js's socket, and
  // one that ends paused leaves it so (the connection's next query never hears back)
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  // PostgreSQL sends the header and the row in one message: the row is read where it lies
  let field = chunks[0] ? firstField(chunks[0]) : { kind: "no-row" as const };
  if (field.kind === "short") field = firstField(Buffer.concat(chunks));
  if (field.kind === "short") throw new Error(`message ${id}: its body was cut short`);
  return field.kind === "field" ? field.bytes : undefined;
}

async function readPieces(db: Db, id: string, length: number): Promise<Uint8Array | undefined> {
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
