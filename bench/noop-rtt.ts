// noop-rtt.ts - how long an SMTP server's event loop stalls under another load: one session
// sends NOOP every 2 ms for SECONDS and prints the round trips' median, p99, p99.9 and maximum.
// It takes the first port from PORT to PORT+7 that greets with 220 (bench scripts pick their
// ports at start), waiting up to 30 s for one. 127.0.0.1 only.
//
//   node_modules/.bin/bun bench/noop-rtt.ts PORT [SECONDS=10]
//   e.g. with a big-message delivery: BASE_PORT=27400 COUNTS=8 REPS=1 bench/bigmail.sh &
//        sleep 1; node_modules/.bin/bun bench/noop-rtt.ts 27400 9
import net from "node:net";

const port = Number(process.argv[2]);
const seconds = Number(process.argv[3] ?? 10);
if (!Number.isInteger(port) || port <= 0) throw new Error("usage: noop-rtt.ts PORT [SECONDS]");

/** A new connection to `p` if it greets with 220 within 300 ms. */
function greeter(p: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(p, "127.0.0.1");
    const done = (found: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(found ? p : undefined);
    };
    const timer = setTimeout(() => done(false), 300);
    s.once("data", (d) => done(d.toString("latin1").startsWith("220 ")));
    s.once("error", () => done(false));
  });
}

let found: number | undefined;
for (const t0 = Date.now(); found === undefined && Date.now() - t0 < 30_000; await Bun.sleep(50))
  for (let p = port; p < port + 8 && found === undefined; p++) found = await greeter(p);
if (found === undefined) throw new Error(`no SMTP server greets on ${port}-${port + 7}`);

const sock = net.connect(found, "127.0.0.1");
let pending = "";
let waiting: ((line: string) => void) | undefined;
sock.on("data", (d) => {
  pending += d.toString("latin1");
  const end = pending.indexOf("\r\n");
  if (end < 0 || !waiting) return;
  const w = waiting;
  waiting = undefined;
  const line = pending.slice(0, end);
  pending = pending.slice(end + 2);
  w(line);
});
// a server that goes away ends the run with what was measured
const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
const reply = () => Promise.race([new Promise<string>((r) => (waiting = r)), closed.then(() => undefined)]);

await reply(); // the greeting
const rtts: number[] = [];
for (const start = Date.now(); Date.now() - start < seconds * 1000; await Bun.sleep(2)) {
  const sent = performance.now();
  sock.write("NOOP\r\n");
  if ((await reply()) === undefined) break;
  rtts.push(performance.now() - sent);
}
sock.destroy();
rtts.sort((a, b) => a - b);
const at = (q: number) => rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))]!.toFixed(1);
console.log(
  `port ${found}: ${rtts.length} NOOPs, median ${at(0.5)} ms, p99 ${at(0.99)}, p99.9 ${at(0.999)}, max ${at(1)}, over 10 ms: ${rtts.filter((x) => x > 10).length}`,
);
