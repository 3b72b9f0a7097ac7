// authcheck.ts - what the inbound checks (checkInbound: SPF, DKIM, DMARC, ARC through mailauth)
// cost per message in Bun, in-process, with every DNS answer in the resolver's cache: a verdict
// made anew (each message from another envelope sender, as with VERP), a verdict reused (the same
// sender again, as smtp-source sends in checks.sh), and DKIM-signed mail (RSA + Ed25519), which
// is verified every time. A DNS server on 127.0.0.1 answers the first look-ups.
//
//   node_modules/.bin/bun bench/authcheck.ts            # N=5000 messages per case, 3 rounds
//   N=20000 SIZE=10240 node_modules/.bin/bun bench/authcheck.ts
import { Resolver } from "../src/dns/resolver.ts";
import { parseServer } from "../src/dns/servers.ts";
import { type AuthContext, checkInbound, VerdictCache } from "../src/mail/authcheck.ts";
import { dkimTxtValue, generateDkimKeys } from "../src/mail/dkim.ts";
import { dkimSign } from "../src/mail/dkim-sign.ts";
import { startDnsServer } from "../test/helpers/dns.ts";

const N = Number(process.env.N ?? 5000);
const SIZE = Number(process.env.SIZE ?? 10240);
const ROUNDS = 3;

const keys = generateDkimKeys();
const dns = await startDnsServer({
  "sender.test": { TXT: ["v=spf1 ip4:127.0.0.1 -all"], ttl: 600 },
  "_dmarc.sender.test": { TXT: ["v=DMARC1; p=reject"], ttl: 600 },
  "rsa._domainkey.sender.test": { TXT: [dkimTxtValue(keys.rsa)], ttl: 600 },
  "ed._domainkey.sender.test": { TXT: [dkimTxtValue(keys.ed25519)], ttl: 600 },
});
const ctx: AuthContext = {
  ip: "127.0.0.1",
  helo: "client.sender.test",
  mailFrom: "news@sender.test",
  hostname: "mx.example.test",
  resolver: new Resolver({ servers: [parseServer(dns.spec)] }),
  verdicts: new VerdictCache(),
};

const line = `${"x".repeat(76)}\r\n`;
const unsigned = new TextEncoder().encode(
  "From: News <news@sender.test>\r\nTo: alice@example.test\r\nSubject: bench\r\n" +
    "Date: Sun, 29 Nov 2026 08:23:01 +0000\r\nMessage-ID: <bench@sender.test>\r\n\r\n" +
    line.repeat(Math.ceil(SIZE / line.length)),
);
const signature = dkimSign(unsigned, [
  { domain: "sender.test", selector: "rsa", privateKey: keys.rsa },
  { domain: "sender.test", selector: "ed", privateKey: keys.ed25519 },
]);
const signed = Buffer.concat([Buffer.from(signature, "latin1"), unsigned]);

const cases: [string, (i: number) => Promise<unknown>][] = [
  [
    "unsigned, new verdict each",
    (i) => checkInbound(unsigned, { ...ctx, mailFrom: `bounce-${i}@sender.test` }),
  ],
  ["unsigned, verdict reused", () => checkInbound(unsigned, ctx)],
  ["DKIM-signed (RSA + Ed25519)", () => checkInbound(signed, ctx)],
];

const first = await checkInbound(signed, ctx);
if (first.verdict.dkim.some((d) => d.result !== "pass") || first.verdict.dmarc.result !== "pass") {
  throw new Error(`bench setup: signed message does not pass: ${JSON.stringify(first.verdict)}`);
}
console.log(
  `checkInbound, ${unsigned.length}-byte message, ${N} messages x ${ROUNDS} rounds, Bun ${Bun.version}`,
);
console.log("| case | µs/msg per round | messages/s of one core (best round) |");
console.log("| --- | --- | --- |");
for (const [name, run] of cases) {
  for (let i = 0; i < 200; i++) await run(i); // JIT and caches warm
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const start = performance.now();
    for (let i = 0; i < N; i++) await run(r * N + i + 1000);
    rounds.push(((performance.now() - start) * 1000) / N);
  }
  const best = Math.min(...rounds);
  console.log(`| ${name} | ${rounds.map((u) => u.toFixed(1)).join(" / ")} | ${Math.round(1e6 / best)} |`);
}
await dns.close();
