// hook-sender.ts - what the event webhook sender costs per event, alone: N events written
// straight into a throwaway PostgreSQL cluster (the test helpers' startCluster: fsync off), one
// hook subscribed to all of them, POSTing to bench/hook-receiver.ts; the sender runs in this
// process and its CPU (user + sys) is divided by N once the receiver has counted them all.
// NOPOST=1 answers every POST in-process instead: what reading and recording the stream costs.
//
//   bun bench/hook-receiver.ts 28556 & bun bench/hook-sender.ts 28556; kill %1
//   N=40000 NOPOST=1 bun bench/hook-sender.ts 28556
import postgres from "postgres";
import { migrate } from "../src/db/migrate.ts";
import { openDatabase } from "../src/db/open.ts";
import { HookSender } from "../src/hooks/sender.ts";
import { addHook } from "../src/hooks/store.ts";
import { createLogger } from "../src/log.ts";
import type { HttpPoster } from "../src/net/http-poster.ts";
import { tempDir } from "../test/helpers/cli.ts";
import { startCluster } from "../test/helpers/pg.ts";

const N = Number(process.env.N ?? 20000);
const receiver = `http://127.0.0.1:${Number(process.argv[2])}`;
const cluster = await startCluster();
try {
  const database = await openDatabase({ databaseUrl: cluster.url, dataDir: tempDir() });
  await migrate(database);
  await addHook(database.db, { url: new URL(`${receiver}/`), events: undefined, domain: undefined });
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  for (let i = 0; i < N; i += 1000)
    await sql`insert into events (type, message_id, mail_from, rcpt, reply_code, reply_text)
      select case when g % 2 = 0 then 'accepted' else 'delivered' end, 'M' || g, 'from@client.test',
        'to@bench.test', 250, '2.0.0 Ok: queued as ABCDEF'
      from generate_series(${i}::int, ${Math.min(i + 1000, N) - 1}::int) g`;
  await sql.end();

  // bench/hook-receiver.ts answers the POSTs it got; nginx's stub_status a page whose third line's
  // third number counts every request, these /count requests (this one included) too
  let polls = 0;
  const received = async () => {
    const text = await (await fetch(`${receiver}/count`)).text();
    polls++;
    const requests = text.split("\n")[2]?.trim().split(" ")[2];
    return requests === undefined ? Number(text) : Number(requests) - polls;
  };
  const sender = new HookSender({
    db: database.db,
    owner: "bench",
    log: createLogger("warn"),
    policy: { baseSeconds: 60, maxSeconds: 60, lifetimeSeconds: 86400 },
  });
  let answered = 0;
  if (process.env.NOPOST === "1")
    (sender as unknown as { poster: Pick<HttpPoster, "post"> }).poster.post = async () => {
      answered++;
      return { status: 200, reason: "OK", location: undefined };
    };
  const before = await received();
  const sent = async () => (process.env.NOPOST === "1" ? answered : (await received()) - before);
  const cpu = process.cpuUsage();
  const started = performance.now();
  sender.start();
  while ((await sent()) < N) await Bun.sleep(20);
  const used = process.cpuUsage(cpu);
  const ms = performance.now() - started;
  await sender.stop();
  await database.close();
  const perEvent = (us: number) => (us / 1000 / N).toFixed(4);
  console.log(
    `${N} events in ${ms.toFixed(0)} ms (${Math.round((N / ms) * 1000)}/s): Bun CPU ${perEvent(used.user + used.system)} ms/event (user ${perEvent(used.user)})${process.env.NOPOST === "1" ? ", POSTs answered in-process" : ""}`,
  );
} finally {
  cluster.destroy();
}
