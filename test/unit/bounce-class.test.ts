// Every bounce rule with a case (src/delivery/bounce-rules.json): a new rule comes with a line here.
import { describe, expect, test } from "bun:test";
import {
  type BounceClass,
  type ClassifiedOutcome,
  classifyOutcome,
  readReply,
} from "../../src/delivery/bounce-class.ts";

const remote = (reply: string) => ({ from: "remote" as const, ...readReply(reply) });
const local = (enhanced: string, text: string) => ({ from: "local" as const, code: 0, enhanced, text });

describe("bounce classes", () => {
  test.each<[string, ClassifiedOutcome, BounceClass]>([
    [
      "Gmail: no such user",
      remote("550 5.1.1 The email account that you tried to reach does not exist."),
      "hard",
    ],
    ["bad destination mailbox", remote("550 5.1.2 Host unknown"), "hard"],
    ["bad address syntax", remote("553 5.1.3 Bad recipient address syntax"), "hard"],
    ["moved", remote("551 5.1.6 Mailbox has moved"), "hard"],
    ["null MX (ours, RFC 7505)", local("5.1.10", "example.test accepts no mail (null MX)"), "hard"],
    ["no enhanced code, user unknown in words", remote("550 User unknown in local recipient table"), "hard"],
    [
      "Postfix relay: recipient address rejected",
      remote("550 Recipient address rejected: undeliverable"),
      "hard",
    ],
    ["mailbox full (4.2.2)", remote("452 4.2.2 Mailbox full"), "soft"],
    ["mailbox full, permanent code", remote("552 5.2.2 Over quota"), "soft"],
    ["over quota in words", remote("552 Requested action aborted: quota exceeded"), "soft"],
    ["greylisting", remote("450 4.2.0 Greylisted, please try again in 300 seconds"), "soft"],
    ["any other 4xx", remote("451 4.3.0 Local error in processing"), "soft"],
    [
      "connection refused (ours)",
      local("4.4.1", "mx.remote.test: cannot connect to mx.remote.test:25: ECONNREFUSED"),
      "soft",
    ],
    [
      "Gmail rate limit",
      remote("421 4.7.28 Our system has detected an unusual rate of unsolicited mail"),
      "rate-limit",
    ],
    [
      "Microsoft rate limit",
      remote("451 4.7.650 The mail server has been temporarily rate limited"),
      "rate-limit",
    ],
    [
      "Yahoo deferral",
      remote("421 4.7.0 [TSS04] Messages temporarily deferred due to unexpected volume"),
      "rate-limit",
    ],
    ["too many connections", remote("421 Too many connections from your IP"), "rate-limit"],
    [
      "Spamhaus listing",
      remote("554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org"),
      "block",
    ],
    [
      "DMARC policy",
      remote("550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy"),
      "block",
    ],
    ["spam in words, no enhanced code", remote("554 Message rejected as spam"), "block"],
    ["our DNS failed", local("4.4.3", "remote.test: DNS look-up failed (ETIMEOUT)"), "config"],
    [
      "a private destination",
      local("5.4.4", "550 5.4.4 mx.inner.test: only loopback, private or reserved addresses"),
      "config",
    ],
    [
      "a stored target we cannot read",
      local("4.3.5", 'local error: the stored target "x": unknown target'),
      "config",
    ],
    [
      "MTA-STS: a certificate for another name (the host was reached)",
      remote(
        "451 4.7.5 mx.example.test's certificate does not verify (ERR_TLS_CERT_ALTNAME_INVALID); the MTA-STS policy of example.test requires TLS with a valid certificate: not sent (MTA-STS)",
      ),
      "config",
    ],
    [
      "MTA-STS: no MX host the policy names",
      local(
        "4.7.4",
        "451 4.7.4 the MTA-STS policy of example.test names none of its MX hosts (mx.other.test): not sent (MTA-STS)",
      ),
      "config",
    ],
    ["a 5xx that says nothing known", remote("554 Transaction failed"), "unknown"],
  ])("%s → %p", (_name, outcome, expected) => {
    expect(classifyOutcome(outcome)).toBe(expected);
  });

  test("replies are read apart into code, enhanced code and text", () => {
    expect(readReply("550 5.1.1 no such user")).toEqual({
      code: 550,
      enhanced: "5.1.1",
      text: "no such user",
    });
    expect(readReply("421 Too many")).toEqual({ code: 421, enhanced: undefined, text: "Too many" });
    expect(readReply("mx: cannot connect")).toEqual({
      code: 0,
      enhanced: undefined,
      text: "mx: cannot connect",
    });
  });
});
