// accept-encoding.ts - what writing message rows costs by the way they travel to PostgreSQL:
// the accept statement's way (one statement, columns as unnested arrays, bodies as base64 text
// decoded by the statement) against `COPY messages FROM STDIN (FORMAT binary)` in a transaction
// (bodies as their own bytes). Only the messages table, B batches of N rows with SIZE-byte
// bodies, into a throwaway cluster (the test helpers' startCluster); Bun CPU (this process) and
// PostgreSQL CPU (its process tree, from /proc) per row, best of REPS.
//
//   bun bench/accept-encoding.ts            # N in 1 8 32, SIZE=10240, 4000 rows each
import { readdirSync, readFileSync } from "node:fs";
import postgres from "postgres";
import { migrate } from "../src/db/migrate.ts";
import { openDatabase } from "../src/db/open.ts";
import { messages } from "../src/db/schema.ts";
import { flatStatement, UnnestedInsert } from "../src/db/unnest.ts";
import { tempDir } from "../test/helpers/cli.ts";
import { startCluster } from "../test/helpers/pg.ts";

const SIZE = Number(process.env.SIZE ?? 10240);
const ROWS = Number(process.env.ROWS ?? 4000);
const REPS = Number(process.env.REPS ?? 3);
const body = new Uint8Array(SIZE).map((_, i) => 32 + (i % 90));

/** CPU ticks (user + sys) of the postgres processes, whose command line names the cluster's port. */
function pgTicks(port: string): number {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "latin1");
      const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
      if (!/postgres/.test(stat.slice(0, stat.indexOf(")") + 1))) continue;
      if (!cmd.includes(port) && !/postgres: /.test(cmd)) continue;
      const f = stat.slice(stat.indexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return ticks;
}

// The binary COPY format (PostgreSQL docs, "COPY ... Binary Format"): a signature, then per row
// a field count and each field as a length and its bytes; -1 at the end.
const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
function copyRows(rows: { id: string; at: Date; mailFrom: string; raw: Uint8Array }[]): Buffer[] {
  const head = Buffer.alloc(19);
  SIGNATURE.copy(head);
  const out: Buffer[] = [head];
  for (const r of rows) {
    const id = Buffer.from(r.id);
    const from = Buffer.from(r.mailFrom);
    const fixed = Buffer.alloc(2 + 4 + id.length + 4 + 8 + 4 + 7 + 4 + from.length + 4 + 4 + 4);
    let o = fixed.writeInt16BE(6, 0);
    o = fixed.writeInt32BE(id.length, o);
    o += id.copy(fixed, o);
    o = fixed.writeInt32BE(8, o);
    o = fixed.writeBigInt64BE(BigInt(r.at.getTime() - PG_EPOCH_MS) * 1000n, o);
    o = fixed.writeInt32BE(7, o);
    o += fixed.write("inbound", o, "latin1");
    o = fixed.writeInt32BE(from.length, o);
    o += from.copy(fixed, o);
    o = fixed.writeInt32BE(4, o);
    o = fixed.writeInt32BE(r.raw.length, o);
    o = fixed.writeInt32BE(r.raw.length, o);
    out.push(fixed, Buffer.from(r.raw.buffer, r.raw.byteOffset, r.raw.byteLength));
  }
  out.push(Buffer.from([0xff, 0xff]));
  return out;
}

const cluster = await startCluster();
const port = new URL(cluster.url).port;
try {
  const database = await openDatabase({ databaseUrl: cluster.url, dataDir: tempDir() });
  await migrate(database);
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  const insert = new UnnestedInsert(messages, ["id", "receivedAt", "direction", "mailFrom", "size", "raw"]);
  let seq = 0;
  const batch = (n: number) =>
    Array.from({ length: n }, () => ({
      id: `m${seq++}`,
      at: new Date(),
      mailFrom: "from@client.test",
      raw: body,
    }));
  const ways = {
    statement: async (rows: ReturnType<typeof batch>) => {
      await database.db.execute(
        flatStatement(
          insert.parts(
            rows.map((r) => ({
              id: r.id,
              receivedAt: r.at,
              direction: "inbound",
              mailFrom: r.mailFrom,
              size: r.raw.length,
              raw: r.raw,
            })),
          ),
        ),
      );
    },
    copy: async (rows: ReturnType<typeof batch>) => {
      await sql.begin(async (tx) => {
        const w =
          await tx`copy messages (id, received_at, direction, mail_from, size, raw) from stdin (format binary)`.writable();
        for (const chunk of copyRows(rows)) w.write(chunk);
        await new Promise<void>((resolve, reject) =>
          w.end((err?: Error | null) => (err ? reject(err) : resolve())),
        );
      });
    },
  };
  console.log(`| rows per batch | way | Bun CPU ms/row | PostgreSQL CPU ms/row | rows/s |`);
  console.log(`| --- | --- | --- | --- | --- |`);
  for (const n of [1, 8, 32]) {
    for (const [name, write] of Object.entries(ways)) {
      let best = { bun: Infinity, pg: Infinity, rate: 0 };
      for (let rep = 0; rep < REPS; rep++) {
        await sql`truncate messages cascade`;
        const c0 = process.cpuUsage();
        const p0 = pgTicks(port);
        const t0 = performance.now();
        for (let i = 0; i < ROWS; i += n) await write(batch(n));
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        const pg = ((pgTicks(port) - p0) * 1000) / 100;
        const bun = (c.user + c.system) / 1000;
        if (bun < best.bun) best = { bun, pg, rate: (ROWS / ms) * 1000 };
      }
      const [count] = await sql`select count(*)::int as n from messages`;
      if (count!.n !== ROWS) throw new Error(`${name}: ${count!.n} rows, not ${ROWS}`);
      console.log(
        `| ${n} | ${name} | ${(best.bun / ROWS).toFixed(4)} | ${(best.pg / ROWS).toFixed(4)} | ${Math.round(best.rate)} |`,
      );
    }
  }
  await sql.end();
  await database.close();
} finally {
  cluster.destroy();
}
