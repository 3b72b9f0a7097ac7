// encoder.ts - what the DATA encoder (src/smtp/dotstuff.ts) costs for one 25 MiB message, alone:
// time and the process's RSS growth while its pieces are handed out (and dropped, as a socket
// that took them would), for a stored message (CRLF lines of base64) and for one of bare LFs
// (every line fixed). Three rounds each. REV: compare with
// `git show <commit>:src/smtp/dotstuff.ts > /tmp/dotstuff.ts` and ENCODER=/tmp/dotstuff.ts.
//
//   node_modules/.bin/bun bench/encoder.ts
import { join } from "node:path";

const path = process.env.ENCODER ?? join(import.meta.dir, "../src/smtp/dotstuff.ts");
const { encodeData } = (await import(path)) as typeof import("../src/smtp/dotstuff.ts");
const SIZE = 25 * 1024 * 1024;

function message(lineEnd: string): Uint8Array {
  const line = Buffer.from(`${"QUJD".repeat(19)}${lineEnd}`);
  const out = new Uint8Array(SIZE - (SIZE % line.length));
  for (let at = 0; at < out.length; at += line.length) out.set(line, at);
  return out;
}

const mib = (octets: number) => (octets / 1048576).toFixed(1);
for (const [name, data] of [
  ["CRLF lines", message("\r\n")],
  ["bare-LF lines", message("\n")],
] as const) {
  for (let round = 1; round <= 3; round++) {
    Bun.gc(true);
    const before = process.memoryUsage.rss();
    let peak = before;
    let pieces = 0;
    const started = performance.now();
    for (const _piece of encodeData(data))
      if (++pieces % 16 === 0) peak = Math.max(peak, process.memoryUsage.rss());
    const ms = performance.now() - started;
    console.log(
      `${name}, round ${round}: ${ms.toFixed(0)} ms, ${pieces} pieces, RSS +${mib(peak - before)} MiB`,
    );
  }
}
