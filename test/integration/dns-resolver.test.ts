// The resolver against an in-process DNS server on 127.0.0.1 (and ::1): the behaviour Bun's own
// resolver gets wrong (multi-string TXT, NXDOMAIN vs NODATA), truncation, failover and caching.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import type { udp } from "bun";
import * as packet from "dns-packet";
import { authenticate, dkimSign } from "mailauth";
import type { DnsError } from "../../src/dns/errors.ts";
import { findMx } from "../../src/dns/mx.ts";
import { mailauthResolver, Resolver, type ResolverOptions } from "../../src/dns/resolver.ts";
import { parseServer } from "../../src/dns/servers.ts";
import { type DnsTestServer, startDnsServer, type Zone } from "../helpers/dns.ts";

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const DKIM_TXT = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;
const DKIM_STRINGS = [DKIM_TXT.slice(0, 255), DKIM_TXT.slice(255)];

const ZONE: Zone = {
  "example.test": {
    A: ["192.0.2.10"],
    MX: [
      { exchange: "mx2.example.test", priority: 20 },
      { exchange: "mx1.example.test", priority: 10 },
    ],
    TXT: ["v=spf1 ip4:127.0.0.1 -all"],
  },
  "sel._domainkey.example.test": { TXT: [DKIM_STRINGS] },
  "www.example.test": { CNAME: "example.test" },
  "empty.example.test": { A: ["192.0.2.11"] },
  "deep.below.example.test": { A: ["192.0.2.12"] },
  "v6.example.test": { AAAA: ["2001:db8::1"] },
  "1.0.0.127.in-addr.arpa": { PTR: ["localhost.example.test"] },
  "nomx.example.test": { A: ["192.0.2.13"] },
  "nullmx.example.test": { MX: [{ exchange: ".", priority: 0 }] },
  // about 700 octets of answer: over 512, under the 1232 we announce with EDNS0
  "medium.example.test": { TXT: [0, 1, 2].map((i) => `${i}${"m".repeat(200)}`) },
  // about 1600 octets: over any UDP size we announce
  "large.example.test": { TXT: [0, 1, 2, 3, 4, 5].map((i) => [`${i}${"l".repeat(250)}`]) },
  "short.example.test": { ttl: 1, A: ["192.0.2.14"] },
};

let primary: DnsTestServer;
const started: DnsTestServer[] = [];

async function server(zone: Zone = ZONE, options: Parameters<typeof startDnsServer>[1] = {}) {
  const s = await startDnsServer(zone, options);
  started.push(s);
  return s;
}

function resolverFor(servers: DnsTestServer[], options: Partial<ResolverOptions> = {}): Resolver {
  return new Resolver({ servers: servers.map((s) => parseServer(s.spec)), timeoutMs: 500, ...options });
}

async function failure(promise: Promise<unknown>): Promise<DnsError> {
  try {
    await promise;
  } catch (error) {
    return error as DnsError;
  }
  throw new Error("expected the look-up to fail");
}

beforeAll(async () => {
  primary = await server();
});

afterAll(async () => {
  await Promise.all(started.map((s) => s.close()));
});

describe("records", () => {
  test("an RSA-2048 DKIM key of two strings comes back as ONE record of two strings", async () => {
    const r = resolverFor([primary]);
    const txt = await r.resolve("sel._domainkey.example.test", "TXT");
    expect(txt).toEqual([DKIM_STRINGS]);
    expect(txt[0]!.join("")).toBe(DKIM_TXT);
  });

  test("A, AAAA, MX, PTR, and a CNAME followed", async () => {
    const r = resolverFor([primary]);
    expect(await r.resolve("example.test", "A")).toEqual(["192.0.2.10"]);
    expect(await r.resolve("v6.example.test", "AAAA")).toEqual(["2001:db8::1"]);
    expect(await r.resolve("example.test", "MX")).toEqual([
      { exchange: "mx2.example.test", priority: 20 },
      { exchange: "mx1.example.test", priority: 10 },
    ]);
    expect(await r.resolve("1.0.0.127.in-addr.arpa", "PTR")).toEqual(["localhost.example.test"]);
    expect(await r.resolve("www.example.test", "A")).toEqual(["192.0.2.10"]);
    expect(await r.resolve("www.example.test", "CNAME")).toEqual(["example.test"]);
  });

  test("NXDOMAIN is ENOTFOUND, NODATA is ENODATA (an empty non-terminal too)", async () => {
    const r = resolverFor([primary]);
    const nx = await failure(r.resolve("nowhere.example.test", "A"));
    expect(nx).toBeInstanceOf(Error);
    expect(nx.code).toBe("ENOTFOUND");
    expect((await failure(r.resolve("empty.example.test", "TXT"))).code).toBe("ENODATA");
    expect((await failure(r.resolve("below.example.test", "A"))).code).toBe("ENODATA");
  });

  test("a bad name is EBADNAME without a query", async () => {
    const r = resolverFor([primary]);
    const before = primary.queries.length;
    expect((await failure(r.resolve("a..example.test", "A"))).code).toBe("EBADNAME");
    expect(primary.queries.length).toBe(before);
  });

  test("each caller gets its own copy (mailauth sorts MX lists in place)", async () => {
    const r = resolverFor([primary]);
    const first = await r.resolve("example.test", "MX");
    first.sort((a, b) => a.priority - b.priority);
    first[0]!.exchange = "changed";
    expect((await r.resolve("example.test", "MX"))[0]).toEqual({
      exchange: "mx2.example.test",
      priority: 20,
    });
  });
});

describe("truncation", () => {
  test("a server that truncates over 512 octets: the answer comes over TCP and still resolves", async () => {
    const small = await server(ZONE, { truncateOver512: true });
    const r = resolverFor([small]);
    const txt = await r.resolve("medium.example.test", "TXT");
    expect(txt).toHaveLength(3);
    expect(txt.map((t) => t.join("").length)).toEqual([201, 201, 201]);
    expect(small.queries.filter((q) => q.name === "medium.example.test").map((q) => q.transport)).toEqual([
      "udp",
      "tcp",
    ]);
  });

  test("with EDNS0 the same answer fits in UDP; a larger one goes to TCP", async () => {
    const r = resolverFor([primary]);
    await r.resolve("medium.example.test", "TXT");
    expect(primary.queries.filter((q) => q.name === "medium.example.test").map((q) => q.transport)).toEqual([
      "udp",
    ]);
    const txt = await r.resolve("large.example.test", "TXT");
    expect(txt).toHaveLength(6);
    expect(primary.queries.filter((q) => q.name === "large.example.test").map((q) => q.transport)).toEqual([
      "udp",
      "tcp",
    ]);
  });
});

describe("failover", () => {
  test("a silent server times out, the second one answers", async () => {
    const silent = await server(ZONE, { silent: true });
    const r = resolverFor([silent, primary], { timeoutMs: 300 });
    const start = performance.now();
    expect(await r.resolve("nomx.example.test", "A")).toEqual(["192.0.2.13"]);
    expect(performance.now() - start).toBeGreaterThanOrEqual(290);
    expect(silent.count("nomx.example.test", "A")).toBe(1);
  });

  test("a server whose port is closed is ECONNREFUSED at once; the next one answers", async () => {
    const gone = await Bun.udpSocket({ hostname: "127.0.0.1" });
    const closed = parseServer(`127.0.0.1:${gone.port}`);
    gone.close();
    const alone = new Resolver({ servers: [closed], timeoutMs: 2000 });
    const start = performance.now();
    expect((await failure(alone.resolve("nomx.example.test", "A"))).code).toBe("ECONNREFUSED");
    expect(performance.now() - start).toBeLessThan(1000);
    const both = new Resolver({ servers: [closed, parseServer(primary.spec)], timeoutMs: 2000 });
    expect(await both.resolve("nomx.example.test", "A")).toEqual(["192.0.2.13"]);
  });

  test("SERVFAIL hands over to the next server", async () => {
    const broken = await server(ZONE, { servfail: true });
    const r = resolverFor([broken, primary]);
    expect(await r.resolve("example.test", "A")).toEqual(["192.0.2.10"]);
    expect(broken.count("example.test", "A")).toBe(1);
  });

  test("SERVFAIL everywhere: ESERVFAIL after two rounds over the servers; not cached", async () => {
    const a = await server(ZONE, { servfail: true });
    const b = await server(ZONE, { servfail: true });
    const r = resolverFor([a, b]);
    expect((await failure(r.resolve("example.test", "A"))).code).toBe("ESERVFAIL");
    expect(a.count() + b.count()).toBe(4);
    expect((await failure(r.resolve("example.test", "A"))).code).toBe("ESERVFAIL");
    expect(a.count() + b.count()).toBe(8);
  });

  test("REFUSED is EREFUSED, as in node:dns", async () => {
    const refusing = await server(ZONE, { refused: true });
    const r = resolverFor([refusing], { attempts: 1 });
    expect((await failure(r.resolve("example.test", "A"))).code).toBe("EREFUSED");
  });

  test("silence everywhere is ETIMEOUT, cut by the look-up deadline", async () => {
    const silent = await server(ZONE, { silent: true });
    const r = resolverFor([silent], { timeoutMs: 300, attempts: 3, deadlineMs: 450 });
    const start = performance.now();
    expect((await failure(r.resolve("example.test", "A"))).code).toBe("ETIMEOUT");
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(440);
    expect(elapsed).toBeLessThan(700);
    expect(silent.count()).toBe(2);
  });

  test("a server without EDNS0 (FORMERR) is asked again without it", async () => {
    const old = await server(ZONE, { noEdns: true });
    const r = resolverFor([old]);
    expect(await r.resolve("example.test", "A")).toEqual(["192.0.2.10"]);
    expect(old.count("example.test", "A")).toBe(2);
  });

  test("a CNAME answered alone (the target in another zone) is followed with a query of its own", async () => {
    const auth = await server(
      { "alias.one.test": { CNAME: "target.two.test" }, "target.two.test": { A: ["192.0.2.20"] } },
      { chaseCnames: false },
    );
    const r = resolverFor([auth]);
    expect(await r.resolve("alias.one.test", "A")).toEqual(["192.0.2.20"]);
    expect(auth.count("alias.one.test", "A")).toBe(1);
    expect(auth.count("target.two.test", "A")).toBe(1);
  });

  test("an alias to a cached answer lives only as long as what is left of that answer", async () => {
    const auth = await server(
      {
        "alias.one.test": { ttl: 300, CNAME: "target.two.test" },
        "target.two.test": { ttl: 2, A: ["192.0.2.20"] },
      },
      { chaseCnames: false },
    );
    const r = resolverFor([auth]);
    await r.resolve("target.two.test", "A");
    await Bun.sleep(1500);
    let expires = 0;
    expect(await r.resolve("alias.one.test", "A", (e) => (expires = e))).toEqual(["192.0.2.20"]);
    expect(expires - performance.now()).toBeLessThan(600);
    auth.zone["target.two.test"] = { ttl: 2, A: ["192.0.2.21"] };
    await Bun.sleep(600);
    expect(await r.resolve("alias.one.test", "A")).toEqual(["192.0.2.21"]);
  });

  test("an IPv6 server given as [::1]:port", async () => {
    let v6: DnsTestServer;
    try {
      v6 = await server(ZONE, { host: "::1" });
    } catch {
      return; // no IPv6 loopback on this machine
    }
    expect(v6.spec).toBe(`[::1]:${v6.port}`);
    expect(parseServer(v6.spec)).toEqual({ host: "::1", port: v6.port, family: 6 });
    const r = resolverFor([v6]);
    expect(await r.resolve("sel._domainkey.example.test", "TXT")).toEqual([DKIM_STRINGS]);
    expect(await r.resolve("large.example.test", "TXT")).toHaveLength(6);
    expect(v6.queries.map((q) => q.transport)).toEqual(["udp", "udp", "tcp"]);
  });
});

describe("cache", () => {
  test("a second look-up (any case, trailing dot) is answered from the cache", async () => {
    const r = resolverFor([primary]);
    const before = primary.count("nomx.example.test", "AAAA") + primary.count("v6.example.test", "AAAA");
    expect(await r.resolve("v6.example.test", "AAAA")).toEqual(["2001:db8::1"]);
    expect(await r.resolve("V6.Example.TEST.", "AAAA")).toEqual(["2001:db8::1"]);
    // negative answers too (SOA minimum 60 s)
    expect((await failure(r.resolve("nomx.example.test", "AAAA"))).code).toBe("ENODATA");
    expect((await failure(r.resolve("nomx.example.test", "AAAA"))).code).toBe("ENODATA");
    expect(primary.count("nomx.example.test", "AAAA") + primary.count("v6.example.test", "AAAA")).toBe(
      before + 2,
    );
  });

  test("an answer with a 1 s TTL is asked again after a second", async () => {
    const r = resolverFor([primary]);
    const before = primary.count("short.example.test");
    await r.resolve("short.example.test", "A");
    await r.resolve("short.example.test", "A");
    expect(primary.count("short.example.test")).toBe(before + 1);
    await Bun.sleep(1100);
    expect(await r.resolve("short.example.test", "A")).toEqual(["192.0.2.14"]);
    expect(primary.count("short.example.test")).toBe(before + 2);
  });

  test("concurrent identical look-ups share one query", async () => {
    const slow = await server(ZONE, { delayMs: 100 });
    const r = resolverFor([slow]);
    const answers = await Promise.all(
      ["example.test", "EXAMPLE.test", "example.test.", "example.test", "example.test"].map((n) =>
        r.resolve(n, "TXT"),
      ),
    );
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
    expect(slow.count("example.test", "TXT")).toBe(1);
    const errors = await Promise.all([1, 2, 3].map(() => failure(r.resolve("gone.example.test", "A"))));
    expect(errors.map((e) => e.code)).toEqual(["ENOTFOUND", "ENOTFOUND", "ENOTFOUND"]);
    expect(new Set(errors).size).toBe(3); // each caller its own error object: mailauth annotates them
    expect(slow.count("gone.example.test", "A")).toBe(1);
  });
});

describe("UDP sockets", () => {
  test("queries share a socket for at most 32 queries, then a new source port is taken", async () => {
    const s = await server();
    const resolver = resolverFor([s]);
    for (let i = 0; i < 80; i++) await failure(resolver.resolve(`n${i}.example.test`, "A"));
    const perPort = new Map<number, number>();
    for (const q of s.queries) perPort.set(q.sourcePort, (perPort.get(q.sourcePort) ?? 0) + 1);
    expect(s.queries).toHaveLength(80);
    expect(perPort.size).toBeGreaterThanOrEqual(3);
    expect(Math.max(...perPort.values())).toBeLessThanOrEqual(32);
  });

  test("concurrent queries on one socket each get their own answer", async () => {
    const zone: Zone = Object.fromEntries(
      Array.from({ length: 30 }, (_, i) => [`h${i}.example.test`, { A: [`192.0.2.${100 + i}`] }]),
    );
    const s = await server(zone, { delayMs: 20 });
    const resolver = resolverFor([s]);
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => resolver.resolve(`h${i}.example.test`, "A")),
    );
    expect(answers).toEqual(Array.from({ length: 30 }, (_, i) => [`192.0.2.${100 + i}`]));
    expect(new Set(s.queries.map((q) => q.sourcePort)).size).toBeLessThan(30);
  });
});

describe("forged answers", () => {
  test("an answer with the query's id from another port or another address is ignored", async () => {
    // the server answers late; first, forgers on another port of its address and on its port of
    // another address answer at once, with the right id and question
    const answer = (query: packet.DecodedPacket, address: string) =>
      packet.encode({
        type: "response",
        id: query.id,
        flags: packet.AUTHORITATIVE_ANSWER,
        questions: query.questions,
        answers: [{ type: "A", name: query.questions![0]!.name, ttl: 60, data: address }],
      });
    const otherPort = await Bun.udpSocket({ hostname: "127.0.0.1" });
    let otherAddress: udp.Socket<"buffer"> | undefined;
    const real = await Bun.udpSocket({
      hostname: "127.0.0.1",
      socket: {
        data(socket, message, port, address) {
          const query = packet.decode(message);
          otherPort.send(answer(query, "198.51.100.1"), port, address);
          otherAddress?.send(answer(query, "198.51.100.2"), port, address);
          setTimeout(() => socket.send(answer(query, "192.0.2.10"), port, address), 50);
        },
      },
    });
    otherAddress = await Bun.udpSocket({ hostname: "127.0.0.2", port: real.port });
    try {
      const resolver = new Resolver({ servers: [parseServer(`127.0.0.1:${real.port}`)], timeoutMs: 2000 });
      expect(await resolver.resolve("forged.example.test", "A")).toEqual(["192.0.2.10"]);
    } finally {
      for (const s of [real, otherPort, otherAddress]) s?.close();
    }
  });
});

describe("MX for delivery", () => {
  test("MX hosts, the implicit MX, a null MX, no such domain", async () => {
    const r = resolverFor([primary]);
    expect(await findMx(r, "example.test", () => 0)).toEqual({
      kind: "hosts",
      implicit: false,
      hosts: [
        { host: "mx1.example.test", preference: 10 },
        { host: "mx2.example.test", preference: 20 },
      ],
    });
    expect(await findMx(r, "nomx.example.test")).toEqual({
      kind: "hosts",
      implicit: true,
      hosts: [{ host: "nomx.example.test", preference: 0 }],
    });
    expect(await findMx(r, "nullmx.example.test")).toEqual({ kind: "null-mx" });
    expect(await findMx(r, "nowhere.example.test")).toEqual({ kind: "no-domain" });
  });
});

describe("mailauth", () => {
  test("the adapter: TXT string[][], MX objects, node:dns error codes", async () => {
    const resolve = mailauthResolver(resolverFor([primary]));
    expect(await resolve("sel._domainkey.example.test", "TXT")).toEqual([DKIM_STRINGS]);
    expect((await resolve("example.test", "MX")) as unknown[]).toContainEqual({
      exchange: "mx1.example.test",
      priority: 10,
    });
    expect(await resolve("example.test", "A")).toEqual(["192.0.2.10"]);
    expect((await failure(resolve("nowhere.example.test", "TXT"))).code).toBe("ENOTFOUND");
    expect((await failure(resolve("empty.example.test", "TXT"))).code).toBe("ENODATA");
    expect((await failure(resolve("example.test", "NS"))).code).toBe("ENOTIMP");
  });

  test("authenticate() gives spf pass (and dkim pass with the 2-string key) through our resolver", async () => {
    const message = Buffer.from(
      [
        "From: Alice <alice@example.test>",
        "To: bob@elsewhere.test",
        "Subject: hello",
        "Date: Mon, 02 Nov 2026 10:00:00 +0000",
        "Message-ID: <dns-test-1@example.test>",
        "",
        "Hello over our own resolver.",
        "",
      ].join("\r\n"),
    );
    const signing = {
      signingDomain: "example.test",
      selector: "sel",
      privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    };
    // mailauth reads signatureData; its typings also want the fields at the top (ignored there)
    const { signatures } = await dkimSign(message, { ...signing, signatureData: [signing] });
    const result = await authenticate(Buffer.concat([Buffer.from(signatures), message]), {
      ip: "127.0.0.1",
      helo: "mail.example.test",
      sender: "alice@example.test",
      mta: "mx.postern.test",
      resolver: mailauthResolver(resolverFor([primary])),
    });
    expect(result.spf).toMatchObject({ status: { result: "pass" } });
    expect(result.dkim.results[0]?.status.result).toBe("pass");
  });
});
