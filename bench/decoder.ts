// decoder.ts - what the DATA decoder (src/smtp/data.ts) costs per 10 KiB message, alone: a
// message of 100 lines of ~100 octets pushed whole, N times, two rounds. REV: compare with
// `git show <commit>:src/smtp/data.ts > /tmp/data.ts` and DECODER=/tmp/data.ts.
//
//   node_modules/.bin/bun bench/decoder.ts
import { join } from "node:path";

const path = process.env.DECODER ?? join(import.meta.dir, "../src/smtp/data.ts");
const { MessageDecoder } = (await import(path)) as typeof import("../src/smtp/data.ts");
const lines = Array.from({ length: 100 }, (_, i) => `line ${i} ${"y".repeat(90)}`);
const message = Buffer.from(`Subject: x\r\n\r\n${lines.join("\r\n")}\r\n.\r\n`);
const N = Number(process.env.N ?? 20000);
for (let round = 1; round <= 2; round++) {
  const started = performance.now();
  for (let i = 0; i < N; i++) {
    const decoder = new MessageDecoder(1 << 20, true);
    decoder.push(message);
    decoder.result();
  }
  console.log(`round ${round}: ${(((performance.now() - started) * 1000) / N).toFixed(2)} us per message`);
}
