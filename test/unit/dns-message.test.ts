import { describe, expect, test } from "bun:test";
import * as packet from "dns-packet";
import { TtlCache } from "../../src/dns/cache.ts";
import type { DnsErrorCode } from "../../src/dns/errors.ts";
import { encodeQuery, interpret, matchResponse, nameProblem, normalizeName } from "../../src/dns/message.ts";

const SOA: packet.Answer = {
  type: "SOA",
  name: "example.com",
  ttl: 900,
  data: { mname: "ns.example.com", rname: "h.example.com", minimum: 120 },
};

// What a server would send back: encoded and decoded, as the resolver sees it.
function response(
  rcode: number,
  answers: packet.Answer[],
  authorities: packet.Answer[] = [],
  question: packet.Question = { type: "A", name: "www.example.com" },
  id = 7,
): packet.DecodedPacket {
  return packet.decode(
    packet.encode({ type: "response", id, flags: rcode, questions: [question], answers, authorities }),
  );
}

describe("queries and matching answers", () => {
  test("the query asks for recursion and carries EDNS0 with a 1232-byte payload", () => {
    const q = packet.decode(encodeQuery(4242, "example.com", "TXT", true));
    expect(q.id).toBe(4242);
    expect(q.flag_rd).toBe(true);
    expect(q.questions).toEqual([{ name: "example.com", type: "TXT", class: "IN" }]);
    const opt = q.additionals?.[0] as packet.OptAnswer;
    expect(opt.type).toBe("OPT");
    expect(opt.udpPayloadSize).toBe(1232);
    expect(packet.decode(encodeQuery(1, "example.com", "A", false)).additionals).toEqual([]);
  });

  test("a response with another id or question is not the answer", () => {
    const buf = (id: number, name: string, type: packet.RecordType) =>
      packet.encode({ type: "response", id, questions: [{ type, name }], answers: [] });
    expect(matchResponse(buf(7, "WWW.Example.com", "A"), 7, "www.example.com", "A")).toBeDefined();
    expect(matchResponse(buf(8, "www.example.com", "A"), 7, "www.example.com", "A")).toBeUndefined();
    expect(matchResponse(buf(7, "evil.example.com", "A"), 7, "www.example.com", "A")).toBeUndefined();
    expect(matchResponse(buf(7, "www.example.com", "AAAA"), 7, "www.example.com", "A")).toBeUndefined();
    const query = packet.encode({
      type: "query",
      id: 7,
      questions: [{ type: "A", name: "www.example.com" }],
    });
    expect(matchResponse(query, 7, "www.example.com", "A")).toBeUndefined();
    expect(matchResponse(Buffer.from("garbage"), 7, "www.example.com", "A")).toBeUndefined();
  });

  test("names: normalized, and refused when dns-packet would mangle them", () => {
    expect(normalizeName(" WWW.Example.COM. ")).toBe("www.example.com");
    expect(nameProblem("www.example.com")).toBeUndefined();
    expect(nameProblem("a..b")).toBe("empty label");
    expect(nameProblem("")).toBe("empty name");
    expect(nameProblem(`${"a".repeat(64)}.com`)).toBe("label longer than 63 octets");
    expect(nameProblem(Array(64).fill("abcd").join("."))).toBe("longer than 253 octets");
  });
});

describe("what an answer means", () => {
  test("records with the smallest TTL", () => {
    const r = response(0, [
      { type: "A", name: "www.example.com", ttl: 300, data: "192.0.2.1" },
      { type: "A", name: "www.example.com", ttl: 60, data: "192.0.2.2" },
    ]);
    expect(interpret(r, "www.example.com", "A")).toEqual({
      kind: "records",
      records: ["192.0.2.1", "192.0.2.2"],
      ttl: 60,
    });
  });

  test("a CNAME chain is followed, its TTLs count", () => {
    const r = response(0, [
      { type: "CNAME", name: "www.example.com", ttl: 30, data: "Web.Example.net" },
      { type: "CNAME", name: "web.example.net", ttl: 600, data: "host.example.org" },
      { type: "A", name: "host.example.org", ttl: 600, data: "192.0.2.9" },
      { type: "A", name: "unrelated.example.org", ttl: 600, data: "192.0.2.66" },
    ]);
    expect(interpret(r, "www.example.com", "A")).toEqual({
      kind: "records",
      records: ["192.0.2.9"],
      ttl: 30,
    });
  });

  test("asked for the CNAME itself, the CNAME is the record", () => {
    const r = response(
      0,
      [{ type: "CNAME", name: "www.example.com", ttl: 30, data: "web.example.net" }],
      [],
      {
        type: "CNAME",
        name: "www.example.com",
      },
    );
    expect(interpret(r, "www.example.com", "CNAME")).toEqual({
      kind: "records",
      records: ["web.example.net"],
      ttl: 30,
    });
  });

  test("a CNAME alone, without an SOA, sends the resolver to the target", () => {
    const r = response(0, [{ type: "CNAME", name: "www.example.com", ttl: 30, data: "web.example.net" }]);
    expect(interpret(r, "www.example.com", "A")).toEqual({
      kind: "follow",
      target: "web.example.net",
      ttl: 30,
    });
  });

  test("a CNAME loop is a server failure", () => {
    const r = response(0, [
      { type: "CNAME", name: "www.example.com", ttl: 30, data: "a.example.com" },
      { type: "CNAME", name: "a.example.com", ttl: 30, data: "www.example.com" },
    ]);
    expect(interpret(r, "www.example.com", "A")).toEqual({ kind: "failure", code: "ESERVFAIL" });
  });

  test("NXDOMAIN and NODATA, cached for min(SOA TTL, SOA minimum), at most 5 minutes", () => {
    expect(interpret(response(3, [], [SOA]), "www.example.com", "A")).toEqual({
      kind: "negative",
      code: "ENOTFOUND",
      ttl: 120,
    });
    expect(interpret(response(0, [], [SOA]), "www.example.com", "A")).toEqual({
      kind: "negative",
      code: "ENODATA",
      ttl: 120,
    });
    const longSoa = {
      ...SOA,
      ttl: 86400,
      data: { mname: "ns", rname: "h", minimum: 86400 },
    } as packet.Answer;
    expect(interpret(response(3, [], [longSoa]), "www.example.com", "A")).toMatchObject({ ttl: 300 });
    // without an SOA nothing says how long: not cached
    expect(interpret(response(3, []), "www.example.com", "A")).toMatchObject({ code: "ENOTFOUND", ttl: 0 });
  });

  test("a CNAME to a missing name is NXDOMAIN (RFC 6604: the rcode is the chain's end)", () => {
    const r = response(
      3,
      [{ type: "CNAME", name: "www.example.com", ttl: 30, data: "gone.example.com" }],
      [SOA],
    );
    expect(interpret(r, "www.example.com", "A")).toMatchObject({ kind: "negative", code: "ENOTFOUND" });
  });

  test.each([
    [2, "ESERVFAIL"],
    [5, "EREFUSED"],
    [1, "EFORMERR"],
    [4, "ENOTIMP"],
  ] as [number, DnsErrorCode][])("rcode %d is %s", (rcode, code) => {
    expect(interpret(response(rcode, []), "www.example.com", "A")).toEqual({ kind: "failure", code });
  });

  test("TXT: one record of several strings stays one record, strings apart", () => {
    const r = response(
      0,
      [
        { type: "TXT", name: "k._domainkey.example.com", ttl: 60, data: ["v=DKIM1; p=AAAA", "BBBB"] },
        { type: "TXT", name: "k._domainkey.example.com", ttl: 60, data: "other" },
      ],
      [],
      { type: "TXT", name: "k._domainkey.example.com" },
    );
    expect(interpret(r, "k._domainkey.example.com", "TXT")).toEqual({
      kind: "records",
      records: [["v=DKIM1; p=AAAA", "BBBB"], ["other"]],
      ttl: 60,
    });
  });

  test("MX: {exchange, priority}, the root exchange as the empty string", () => {
    const r = response(
      0,
      [
        { type: "MX", name: "example.com", ttl: 60, data: { preference: 10, exchange: "mx.example.com" } },
        { type: "MX", name: "example.com", ttl: 60, data: { preference: 0, exchange: "." } },
      ],
      [],
      { type: "MX", name: "example.com" },
    );
    expect(interpret(r, "example.com", "MX")).toEqual({
      kind: "records",
      records: [
        { exchange: "mx.example.com", priority: 10 },
        { exchange: "", priority: 0 },
      ],
      ttl: 60,
    });
  });
});

describe("TTL cache", () => {
  test("entries expire after their TTL; TTL 0 is not kept", () => {
    let now = 0;
    const cache = new TtlCache<string>(10, () => now);
    cache.set("a", "A", 2);
    cache.set("zero", "Z", 0);
    expect(cache.get("a")).toBe("A");
    expect(cache.get("zero")).toBeUndefined();
    now = 1999;
    expect(cache.get("a")).toBe("A");
    now = 2000;
    expect(cache.get("a")).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  test("when full, the oldest entry goes", () => {
    const cache = new TtlCache<number>(3, () => 0);
    for (const [i, key] of ["a", "b", "c", "d"].entries()) cache.set(key, i, 60);
    expect(cache.size).toBe(3);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.get("d")).toBe(3);
    // a key set again counts as new
    cache.set("b", 10, 60);
    cache.set("e", 4, 60);
    expect(cache.get("c")).toBeUndefined();
    expect(cache.get("b")).toBe(10);
  });

  test("a full cache drops its oldest tenth at once, and only that", () => {
    const cache = new TtlCache<number>(20, () => 0);
    for (let i = 0; i < 21; i++) cache.set(`k${i}`, i, 60);
    expect(cache.size).toBe(19);
    expect([cache.get("k0"), cache.get("k1")]).toEqual([undefined, undefined]);
    for (let i = 2; i < 21; i++) expect(cache.get(`k${i}`)).toBe(i);
  });
});
