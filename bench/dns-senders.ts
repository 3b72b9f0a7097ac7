// dns-senders.ts - an authoritative DNS server on a loopback UDP port for benchmarks with any
// number of sender domains: client.test and every sN.senders.test answer A 127.0.0.1, MX 10
// mx.senders.test, TXT "v=spf1 ip4:127.0.0.1 -all"; _dmarc.<that name> TXT "v=DMARC1; p=reject";
// mx.senders.test A 127.0.0.1; 127.0.0.1's PTR is client.test. Names are made up from the query,
// so a load may use a new sender domain for every message (dnsmasq keeps TXT records in a list
// it walks per query: too slow for 100 000 domains). remote.test, submit.sh's recipient domain:
// MX 10 mx.remote.test, A 127.0.0.1. Every other name is NXDOMAIN with an SOA.
// All answers carry TTL $TTL (300). Prints "listening PORT", then counts queries and prints the
// count to stdout on SIGTERM/SIGINT.
//
//   bun bench/dns-senders.ts [PORT]
import { createSocket } from "node:dgram";
import * as packet from "dns-packet";

const ttl = Number(process.env.TTL ?? 300);
const sender = /^(?:(_dmarc)\.)?(client\.test|s\d+\.senders\.test)$/;
const soa: packet.Answer = {
  type: "SOA",
  name: "test",
  ttl,
  data: {
    mname: "ns.test",
    rname: "hostmaster.test",
    serial: 1,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    minimum: ttl,
  },
};

function records(name: string, type: string): packet.Answer[] | undefined {
  if (name === "remote.test")
    return type === "MX"
      ? [{ type: "MX", name, ttl, data: { preference: 10, exchange: "mx.remote.test" } }]
      : [];
  if (name === "mx.senders.test" || name === "mx.remote.test")
    return type === "A" ? [{ type: "A", name, ttl, data: "127.0.0.1" }] : [];
  if (name === "1.0.0.127.in-addr.arpa")
    return type === "PTR" ? [{ type: "PTR", name, ttl, data: "client.test" }] : [];
  const m = sender.exec(name);
  if (m === null) return undefined;
  const txt = (s: string): packet.Answer => ({ type: "TXT", name, ttl, data: [Buffer.from(s)] });
  if (m[1] !== undefined) return type === "TXT" ? [txt("v=DMARC1; p=reject")] : [];
  if (type === "A") return [{ type: "A", name, ttl, data: "127.0.0.1" }];
  if (type === "MX")
    return [{ type: "MX", name, ttl, data: { preference: 10, exchange: "mx.senders.test" } }];
  if (type === "TXT") return [txt("v=spf1 ip4:127.0.0.1 -all")];
  return [];
}

let queries = 0;
const udp = createSocket("udp4");
udp.on("message", (message, from) => {
  let query: packet.DecodedPacket;
  try {
    query = packet.decode(message);
  } catch {
    return;
  }
  const question = query.questions?.[0];
  if (question === undefined) return;
  queries++;
  const answers = records(question.name.toLowerCase().replace(/\.$/, ""), question.type);
  const hasOpt = (query.additionals ?? []).some((a) => a.type === "OPT");
  const reply = packet.encode({
    type: "response",
    id: query.id,
    flags: packet.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & packet.RECURSION_DESIRED) | (answers ? 0 : 3),
    questions: [question],
    answers: answers ?? [],
    authorities: answers?.length ? [] : [soa],
    additionals: hasOpt ? [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as packet.Answer] : [],
  });
  udp.send(reply, from.port, from.address);
});
udp.bind(Number(process.argv[2] ?? 0), "127.0.0.1", () => console.log(`listening ${udp.address().port}`));
const stop = () => {
  console.log(`queries ${queries}`);
  udp.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
