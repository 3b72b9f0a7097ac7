import { describe, expect, test } from "bun:test";
import { Resolver } from "../../src/dns/resolver.ts";
import { checkDnsbl, dnsblName } from "../../src/net/dnsbl.ts";
import { startDnsServer } from "../helpers/dns.ts";

describe("DNSBL query names (RFC 5782)", () => {
  test.each([
    ["127.0.0.2", "zen.test", "2.0.0.127.zen.test"],
    ["192.0.2.99", "bl.example", "99.2.0.192.bl.example"],
    ["::ffff:192.0.2.99", "bl.example", "99.2.0.192.bl.example"],
    [
      "2001:db8:1:2:3:4:567:89ab",
      "ip6.bl.example",
      "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.bl.example",
    ],
  ])("%s in %s → %s", (ip, zone, name) => {
    expect(dnsblName(ip, zone)).toBe(name);
  });

  test("not an address → nothing to look up", () => {
    expect(dnsblName("not-an-ip", "zen.test")).toBeUndefined();
  });
});

describe("checkDnsbl against a DNS server", () => {
  test("listed, clear, and a failing zone that lets the client through but says so", async () => {
    const dns = await startDnsServer({ "2.0.0.127.bl.test": { A: ["127.0.0.2"] } });
    const broken = await startDnsServer({}, { servfail: true });
    try {
      const resolver = new Resolver({ servers: [{ host: "127.0.0.1", port: dns.port, family: 4 }] });
      expect(await checkDnsbl(resolver, "127.0.0.2", ["bl.test"])).toEqual({
        kind: "listed",
        zone: "bl.test",
      });
      expect(await checkDnsbl(resolver, "127.0.0.3", ["bl.test"])).toEqual({ kind: "clear" });
      const failing = new Resolver({
        servers: [{ host: "127.0.0.1", port: broken.port, family: 4 }],
        attempts: 1,
      });
      expect(await checkDnsbl(failing, "127.0.0.2", ["bl.test"])).toEqual({
        kind: "error",
        zone: "bl.test",
        code: "ESERVFAIL",
      });
    } finally {
      await dns.close();
      await broken.close();
    }
  });
});
