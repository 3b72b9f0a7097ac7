import { describe, expect, test } from "bun:test";
import { chooseMx } from "../../src/dns/mx.ts";

// A fixed sequence of "random" numbers, cycled.
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

const mx = (exchange: string, priority: number) => ({ exchange, priority });

describe("MX choice (RFC 5321 5.1, RFC 7505)", () => {
  test("hosts come in preference order", () => {
    const choice = chooseMx("example.com", { records: [mx("b.example.com", 20), mx("a.example.com", 10)] });
    expect(choice).toEqual({
      kind: "hosts",
      implicit: false,
      hosts: [
        { host: "a.example.com", preference: 10 },
        { host: "b.example.com", preference: 20 },
      ],
    });
  });

  test("equal preferences are shuffled with the given random source, others stay in place", () => {
    const records = [
      mx("x.example.com", 10),
      mx("y.example.com", 10),
      mx("z.example.com", 10),
      mx("last.example.com", 30),
    ];
    const hosts = (random: () => number) => {
      const choice = chooseMx("example.com", { records }, random);
      return choice.kind === "hosts" ? choice.hosts.map((h) => h.host) : [];
    };
    // Fisher-Yates from the end: 0.99 keeps each item where it is, 0 swaps it with the first.
    expect(hosts(sequence(0.99))).toEqual([
      "x.example.com",
      "y.example.com",
      "z.example.com",
      "last.example.com",
    ]);
    expect(hosts(sequence(0))).toEqual([
      "y.example.com",
      "z.example.com",
      "x.example.com",
      "last.example.com",
    ]);
    // 0.5 swaps z with y, then 0 swaps the new second (z) with x
    expect(hosts(sequence(0.5, 0))).toEqual([
      "z.example.com",
      "x.example.com",
      "y.example.com",
      "last.example.com",
    ]);
  });

  test("every order of equal hosts turns up over many draws", () => {
    const records = [mx("a.example.com", 5), mx("b.example.com", 5)];
    const firsts = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const choice = chooseMx("example.com", { records });
      if (choice.kind === "hosts") firsts.add(choice.hosts[0]!.host);
    }
    expect(firsts).toEqual(new Set(["a.example.com", "b.example.com"]));
  });

  test("host names lose the trailing dot and case; a host listed twice keeps its best preference", () => {
    const choice = chooseMx("example.com", {
      records: [mx("MX1.Example.COM.", 20), mx("mx2.example.com", 10), mx("mx1.example.com", 5)],
    });
    expect(choice.kind === "hosts" && choice.hosts).toEqual([
      { host: "mx1.example.com", preference: 5 },
      { host: "mx2.example.com", preference: 10 },
    ]);
  });

  test("no MX records (ENODATA): the domain is its own host, the implicit MX", () => {
    expect(chooseMx("Example.com.", { error: { code: "ENODATA" } })).toEqual({
      kind: "hosts",
      implicit: true,
      hosts: [{ host: "example.com", preference: 0 }],
    });
    expect(chooseMx("example.com", { records: [] })).toMatchObject({ kind: "hosts", implicit: true });
  });

  test.each([mx("", 0), mx(".", 0)])("a null MX (%o) means the domain takes no mail", (record) => {
    expect(chooseMx("example.com", { records: [record] })).toEqual({ kind: "null-mx" });
  });

  test("a root host beside real hosts is dropped, the real ones are used", () => {
    const choice = chooseMx("example.com", { records: [mx("", 0), mx("mx.example.com", 10)] });
    expect(choice).toEqual({
      kind: "hosts",
      implicit: false,
      hosts: [{ host: "mx.example.com", preference: 10 }],
    });
  });

  test("NXDOMAIN (ENOTFOUND): no such domain", () => {
    expect(chooseMx("nowhere.example", { error: { code: "ENOTFOUND" } })).toEqual({ kind: "no-domain" });
  });

  test.each(["ESERVFAIL", "ETIMEOUT", "EREFUSED"])("%s is temporary", (code) => {
    expect(chooseMx("example.com", { error: { code } })).toEqual({ kind: "temporary", code });
  });
});
