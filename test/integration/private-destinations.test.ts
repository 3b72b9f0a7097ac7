// A domain whose MX points into loopback or an inner network: the gateway does not carry mail
// there unless the operator allows it. The SMTP courier for real, against a real DNS server and
// aiosmtpd on loopback (which must see nothing when the destination is refused).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Job } from "../../src/delivery/courier.ts";
import { type MxPlanOptions, mxPlan, SmtpCourier } from "../../src/delivery/smtp-courier.ts";
import { createResolver, type Resolver } from "../../src/dns/resolver.ts";
import { type Aiosmtpd, haveAiosmtpd, startAiosmtpd } from "../helpers/aiosmtpd.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";

function job(rcpt: string, subject: string): Job {
  return {
    delivery: {
      id: 1,
      messageId: "m1",
      rcpt,
      orcpt: null,
      notify: null,
      target: { kind: "mx" },
      attempts: 0,
      createdAt: new Date(),
      warnedAt: null,
      size: 100,
    },
    message: {
      id: "m1",
      mailFrom: "u@example.test",
      raw: new TextEncoder().encode(`From: u@example.test\r\nSubject: ${subject}\r\n\r\nbody\r\n`),
      envid: null,
      ret: null,
      receivedAt: new Date(),
      direction: "outbound",
      subject,
      authResults: null,
      messageIdHeader: null,
    },
  };
}

describe.skipIf(!haveAiosmtpd)("destinations found in DNS", () => {
  let dns: DnsTestServer;
  let peer: Aiosmtpd;
  let resolver: Resolver;
  beforeAll(async () => {
    peer = await startAiosmtpd();
    dns = await startDnsServer({
      "inner.test": { MX: [{ exchange: "mx.inner.test", priority: 10 }] },
      "mx.inner.test": { A: ["127.0.0.1"] },
      // no MX: the implicit MX is the domain's own address, mapped into IPv6
      "mapped.test": { AAAA: ["::ffff:127.0.0.1"] },
    });
    resolver = await createResolver([dns.spec]);
  });
  afterAll(async () => {
    await peer?.stop();
    await dns?.close();
  });

  const courier = (allowPrivate: boolean) =>
    new SmtpCourier({
      helo: "mx.example.test",
      resolver,
      plan: mxPlan({ resolver, port: peer.port, allowPrivate } satisfies MxPlanOptions),
    });

  test.each([
    ["an MX on loopback", "x@inner.test"],
    ["an IPv4-mapped loopback address", "x@mapped.test"],
  ])("%s is bounced (550 5.4.4) by default and never connected to", async (_name, rcpt) => {
    const [report] = await courier(false).deliver([job(rcpt, `refused ${rcpt}`)]);
    expect(report!.outcome).toBe("bounced");
    expect(report!.status).toBe("5.4.4");
    expect(report!.reply).toStartWith("550 5.4.4 ");
    expect(report!.reply).toContain("loopback, private or reserved");
    await Bun.sleep(200);
    expect(peer.subjects()).not.toContain(`refused ${rcpt}`);
  });

  test("with private destinations allowed, the same MX is delivered to", async () => {
    const [report] = await courier(true).deliver([job("x@inner.test", "allowed")]);
    expect(report!.outcome).toBe("delivered");
    expect(peer.subjects()).toContain("allowed");
  });
});
