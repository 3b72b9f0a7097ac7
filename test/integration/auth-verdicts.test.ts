// Verdicts on unsigned mail reused per (client IP, HELO, MAIL FROM, From) for as long as the DNS
// answers they rest on: checked against a DNS server on loopback whose records change under it.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Resolver } from "../../src/dns/resolver.ts";
import { parseServer } from "../../src/dns/servers.ts";
import { type AuthContext, checkInbound, VerdictCache } from "../../src/mail/authcheck.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const message = (from: string, extra = "") =>
  enc(`From: ${from}\r\nTo: alice@example.test\r\nSubject: s\r\n${extra}\r\nbody\r\n`);

describe("VerdictCache", () => {
  let dns: DnsTestServer;
  let ctx: AuthContext;

  beforeEach(async () => {
    dns = await startDnsServer({
      "sender.test": { ttl: 1, TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
      "_dmarc.sender.test": { ttl: 1, TXT: ["v=DMARC1; p=reject"] },
      "other.test": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
      "_dmarc.other.test": { TXT: ["v=DMARC1; p=none"] },
      "bank.test": { TXT: ["v=spf1 -all"] },
      "_dmarc.bank.test": { TXT: ["v=DMARC1; p=reject"] },
    });
    ctx = {
      ip: "127.0.0.1",
      helo: "client.sender.test",
      mailFrom: "bulk@sender.test",
      hostname: "mx.example.test",
      resolver: new Resolver({ servers: [parseServer(dns.spec)], timeoutMs: 200, attempts: 1 }),
      verdicts: new VerdictCache(),
    };
  });
  afterEach(() => dns.close());

  test("the same envelope and From get the kept outcome, without asking DNS again", async () => {
    const first = await checkInbound(message("a@sender.test"), ctx);
    expect(first.verdict.spf).toBe("pass");
    expect(first.verdict.dmarc.result).toBe("pass");
    const queries = dns.queries.length;
    ctx.resolver.clearCache();
    const second = await checkInbound(message("a@sender.test", "X-Other: changes nothing\r\n"), ctx);
    expect(first.how).toBe("checked");
    expect(second.how).toBe("reused");
    expect(second.headers).toBe(first.headers);
    expect(dns.queries.length).toBe(queries);
  });

  test("a different From, MAIL FROM or client IP is judged on its own", async () => {
    const first = await checkInbound(message("a@sender.test"), ctx);
    expect(first.how).toBe("checked");
    const otherFrom = await checkInbound(message("b@other.test"), ctx);
    expect(otherFrom.how).toBe("checked");
    expect(otherFrom.verdict.dmarc).toMatchObject({ result: "fail", domain: "other.test", policy: "none" });
    const otherIp = await checkInbound(message("a@sender.test"), { ...ctx, ip: "127.0.0.2" });
    expect(otherIp.verdict.spf).toBe("fail");
    const otherSender = await checkInbound(message("a@sender.test"), { ...ctx, mailFrom: "x@other.test" });
    expect(otherSender.how).toBe("checked");
    expect(otherSender.headers).toContain("smtp.mailfrom=x@other.test");
    expect(ctx.verdicts?.size).toBe(4);
  });

  test("a From only mailauth sees (folded before the colon) cannot lend its verdict to a spoof", async () => {
    const spoof = message("CEO <ceo@bank.test>");
    const alone = await checkInbound(spoof, { ...ctx, mailFrom: "bounce@other.test", helo: "h1.other.test" });
    expect(alone.dmarcAction).toBe("reject");
    // mailauth reads the first From (other.test: SPF-aligned, pass); a reader that skipped it
    // and took the line with a stray \x0b for a From would key this as a bank.test message
    const primer = enc(
      "To: alice@example.test\r\nFrom\r\n : a@other.test\r\nSubject: hi\r\n\x0bFrom: CEO <ceo@bank.test>\r\n\r\nx\r\n",
    );
    const primed = { ...ctx, mailFrom: "bounce@other.test", helo: "h2.other.test" };
    expect((await checkInbound(primer, primed)).verdict.dmarc).toMatchObject({
      result: "pass",
      domain: "other.test",
    });
    const after = await checkInbound(spoof, primed);
    expect(after.dmarcAction).toBe("reject");
    expect(after.verdict.dmarc.domain).toBe("bank.test");
  });

  test("a verdict lives no longer than the DNS answers it was made from", async () => {
    const first = await checkInbound(message("a@sender.test"), ctx);
    expect(first.verdict.spf).toBe("pass");
    dns.zone["sender.test"] = { ttl: 1, TXT: ["v=spf1 -all"] };
    await Bun.sleep(1100);
    const later = await checkInbound(message("a@sender.test"), ctx);
    expect(later.verdict.spf).toBe("fail");
    expect(later.dmarcAction).toBe("reject");
  });

  test("an outcome made while DNS failed is not kept", async () => {
    dns.behaviour.servfail = true;
    const failed = await checkInbound(message("a@sender.test"), ctx);
    expect(failed.verdict.spf).toBe("temperror");
    expect(ctx.verdicts?.size).toBe(0);
    dns.behaviour.servfail = false;
    const recovered = await checkInbound(message("a@sender.test"), ctx);
    expect(recovered.verdict.spf).toBe("pass");
  });

  test.each([
    ["DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=x; h=from; bh=; b="],
    ["DKIM-Signature\r\n : v=1; a=rsa-sha256; d=sender.test; s=x; h=from; bh=; b="],
    ["ARC-Seal: i=1; a=rsa-sha256; cv=none; d=sender.test; s=x; b="],
  ])("signed mail is verified every time (%j)", async (field) => {
    const signed = message("a@sender.test", `${field}\r\n`);
    const first = await checkInbound(signed, ctx);
    const second = await checkInbound(signed, ctx);
    expect([first.how, second.how]).toEqual(["verified", "verified"]);
    expect(ctx.verdicts?.size).toBe(0);
  });
});
