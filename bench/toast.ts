// toast.ts - what PostgreSQL's CPU costs to store a 10 KiB message body under each TOAST setting
// of the raw column: pglz (PostgreSQL's default), lz4 (migration 0018) and EXTERNAL (stored, not
// compressed). N bodies are stored once (EXTERNAL), then copied by `insert ... select` 20 at a
// time into a fresh table per setting; the CPU is the backend's own (/proc), three rounds.
// A throwaway cluster from the test helpers (fsync off: the CPU, not the disk, is measured).
//
//   node_modules/.bin/bun bench/toast.ts
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { startCluster } from "../test/helpers/pg.ts";

const N = Number(process.env.N ?? 20000);
const cluster = await startCluster();
const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
try {
  const line = (i: number) => `La de da de da ${i} the quick brown fox jumps over the lazy dog ${i * 7}\r\n`;
  const body = Buffer.from(Array.from({ length: 120 }, (_, i) => line(i)).join(""));
  const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
  const ticks = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return Number(fields[11]) + Number(fields[12]);
  };
  await sql.unsafe("create table src (id serial primary key, raw bytea not null)");
  await sql.unsafe("alter table src alter column raw set storage external");
  for (let i = 0; i < N; i += 500)
    await sql`insert into src (raw) select ${body}::bytea from generate_series(1, 500)`;
  const settings: Record<string, string> = {
    pglz: "",
    lz4: "alter table t alter column raw set compression lz4",
    external: "alter table t alter column raw set storage external",
  };
  for (let round = 1; round <= 3; round++)
    for (const [name, setting] of Object.entries(settings)) {
      await sql.unsafe("drop table if exists t; create table t (id serial primary key, raw bytea not null)");
      if (setting) await sql.unsafe(setting);
      const before = ticks();
      for (let i = 0; i < N; i += 20)
        await sql`insert into t (raw) select raw from src where id > ${i} and id <= ${i + 20}`;
      const us = (((ticks() - before) * 10) / N) * 1000;
      const [{ size }] = (await sql`select pg_total_relation_size('t') as size`) as unknown as [
        { size: string },
      ];
      console.log(
        `round ${round} ${name}: ${us.toFixed(1)} us of backend CPU per body, ${Math.round(Number(size) / N)} B/body on disk`,
      );
    }
} finally {
  await sql.end();
  cluster.destroy();
}
