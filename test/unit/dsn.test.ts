import { describe, expect, test } from "bun:test";
import PostalMime, { type Email } from "postal-mime";
import {
  buildDsn,
  type DsnAction,
  type DsnInput,
  type DsnRecipient,
  decodeXtext,
  isNullSender,
  shouldNotify,
} from "../../src/mail/dsn.ts";
import { rfc5322Date } from "../../src/mail/received.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const latin1 = (b: Uint8Array | ArrayBuffer | string) =>
  typeof b === "string" ? b : Buffer.from(b as Uint8Array).toString("latin1");
const utf8 = (b: Uint8Array | ArrayBuffer | string) =>
  typeof b === "string" ? b : Buffer.from(b as Uint8Array).toString("utf8");

const ARRIVAL = new Date(Date.UTC(2026, 10, 24, 8, 0, 0));
const NOW = new Date(Date.UTC(2026, 10, 29, 8, 23, 1));
const ATTEMPT = new Date(Date.UTC(2026, 10, 29, 8, 20, 0));
const UNTIL = new Date(Date.UTC(2026, 10, 29, 8, 0, 0));

const ORIGINAL_HEAD =
  "Received: from c ([192.0.2.1])\r\n\tby mx.example.test (Postern) with ESMTPSA id Q1\r\n\t; date\r\n" +
  "From: Alice <alice@example.test>\r\nTo: bob@example.org\r\nSubject: quarterly report\r\n" +
  "Message-ID: <m1@example.test>\r\n";
const ORIGINAL_BODY = "Hello Bob,\r\n\r\nthe numbers are attached.\r\n.\r\n-- \r\nAlice\r\n";
const ORIGINAL = enc(`${ORIGINAL_HEAD}\r\n${ORIGINAL_BODY}`);

const bounce: DsnRecipient = {
  finalRecipient: "bob@example.org",
  originalRecipient: "rfc822;a+2Bb@x.test",
  action: "failed",
  status: "5.1.1",
  remoteMta: "mx1.example.org",
  diagnosticCode: "550 5.1.1 <bob@example.org>: no such user",
  lastAttemptDate: ATTEMPT,
};

function input(patch: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: "mx.example.test",
    sender: "alice@example.test",
    originalMessage: ORIGINAL,
    arrivalDate: ARRIVAL,
    queueId: "3F7KQ2BZ9XMD",
    recipients: [bounce],
    now: NOW,
    senderVerified: true,
    ...patch,
  };
}

const parse = (raw: Uint8Array) => PostalMime.parse(raw);
const header = (email: Email, name: string) => email.headers.find((h) => h.key === name)?.value;

/** The delivery-status body, each block read back as a header block by postal-mime. */
async function statusBlocks(email: Email): Promise<Record<string, string>[]> {
  const part = email.attachments.find((a) => a.mimeType === "message/delivery-status");
  expect(part).toBeDefined();
  const blocks = utf8(part!.content)
    .replace(/\r\n/g, "\n")
    .split(/\n\n+/)
    .filter((b) => b.trim() !== "");
  const out: Record<string, string>[] = [];
  for (const block of blocks) {
    const parsed = await PostalMime.parse(`${block}\n\n`);
    out.push(Object.fromEntries(parsed.headers.map((h) => [h.key, h.value])));
  }
  return out;
}

/** The third part as it stands in the raw DSN, by the boundary: headers and exact content bytes. */
function thirdPart(raw: Uint8Array): { headers: string; content: Buffer } {
  const text = latin1(raw);
  const boundary = /boundary="([^"]+)"/.exec(text)![1]!;
  const pieces = text.split(`\r\n--${boundary}`);
  expect(pieces).toHaveLength(5); // preamble, three parts, "--" epilogue
  expect(pieces[4]).toBe("--\r\n");
  const part = pieces[3]!.slice(2); // after the CRLF that ends the delimiter line
  const end = part.indexOf("\r\n\r\n");
  return { headers: part.slice(0, end), content: Buffer.from(part.slice(end + 4), "latin1") };
}

function expectWireSafe(raw: Uint8Array) {
  const text = latin1(raw);
  expect(/\r(?!\n)|(?<!\r)\n/.test(text)).toBe(false); // CRLF everywhere, no bare CR or LF
  for (const line of text.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);
  expect(text.endsWith("\r\n")).toBe(true);
}

const hasEightBit = (b: Uint8Array) => b.some((x) => x > 0x7f);

describe("buildDsn: the envelope and the top-level header", () => {
  test("from the null sender to the original sender, as MAILER-DAEMON, a multipart/report", async () => {
    const dsn = buildDsn(input({ sender: "<alice@example.test>" }));
    expect(dsn.mailFrom).toBe("");
    expect(dsn.to).toBe("alice@example.test");
    expectWireSafe(dsn.raw);
    const email = await parse(dsn.raw);
    expect(email.from).toEqual({ name: "Mail Delivery System", address: "MAILER-DAEMON@mx.example.test" });
    expect(email.to).toEqual([{ name: "", address: "alice@example.test" }]);
    expect(email.subject).toBe("Undelivered Mail Returned to Sender");
    expect(header(email, "date")).toBe(rfc5322Date(NOW));
    expect(email.messageId).toMatch(/^<[^<>@\s]+@mx\.example\.test>$/);
    expect(header(email, "auto-submitted")).toBe("auto-replied");
    expect(header(email, "mime-version")).toBe("1.0");
    const type = header(email, "content-type")!;
    expect(type).toMatch(/^multipart\/report;/);
    expect(type).toMatch(/;\s*report-type=("?)delivery-status\1\s*(;|$)/);
    // RFC 6522: the report's parts in order.
    expect(email.attachments.map((a) => a.mimeType)).toEqual(["message/delivery-status", "message/rfc822"]);
    expect(email.text).toContain("This is the mail system at host mx.example.test.");
  });

  test("two DSNs never share a Message-ID", () => {
    const a = latin1(buildDsn(input()).raw);
    const b = latin1(buildDsn(input()).raw);
    const id = (t: string) => /\r\nMessage-ID: (<[^>]+>)\r\n/.exec(t)![1];
    expect(id(a)).not.toBe(id(b));
  });

  test.each<[DsnAction, string, string]>([
    ["failed", "5.1.1", "Undelivered Mail Returned to Sender"],
    ["delayed", "4.4.1", "Delayed Mail (still being retried)"],
    ["delivered", "2.0.0", "Successful Mail Delivery Report"],
    ["relayed", "2.0.0", "Successful Mail Delivery Report"],
    ["expanded", "2.0.0", "Successful Mail Delivery Report"],
  ])("Subject and Action for %s", async (action, status, subject) => {
    const email = await parse(buildDsn(input({ recipients: [{ ...bounce, action, status }] })).raw);
    expect(email.subject).toBe(subject);
    const [, r] = await statusBlocks(email);
    expect(r!.action).toBe(action);
    expect(r!.status).toBe(status);
  });
});

describe("buildDsn: message/delivery-status (RFC 3464)", () => {
  test("per-message fields: Original-Envelope-Id decoded from xtext, Reporting-MTA, Arrival-Date, queue id", async () => {
    const email = await parse(buildDsn(input({ envid: "QQ+2B314+3D" })).raw);
    const [perMessage] = await statusBlocks(email);
    expect(perMessage).toEqual({
      "original-envelope-id": "QQ+314=",
      "reporting-mta": "dns; mx.example.test",
      "arrival-date": rfc5322Date(ARRIVAL),
      "x-postern-queue-id": "3F7KQ2BZ9XMD",
    });
  });

  test("no ENVID, no Original-Envelope-Id", async () => {
    const [perMessage] = await statusBlocks(await parse(buildDsn(input()).raw));
    expect(perMessage!["original-envelope-id"]).toBeUndefined();
  });

  test("one block per recipient, field by field; optional fields only when known", async () => {
    const second: DsnRecipient = { finalRecipient: "carol@example.org", action: "failed", status: "5.7.1" };
    const email = await parse(buildDsn(input({ recipients: [bounce, second] })).raw);
    const blocks = await statusBlocks(email);
    expect(blocks).toHaveLength(3);
    expect(blocks[1]).toEqual({
      "original-recipient": "rfc822;a+b@x.test",
      "final-recipient": "rfc822; bob@example.org",
      action: "failed",
      status: "5.1.1",
      "remote-mta": "dns; mx1.example.org",
      "diagnostic-code": "smtp; 550 5.1.1 <bob@example.org>: no such user",
      "last-attempt-date": rfc5322Date(ATTEMPT),
    });
    expect(blocks[2]).toEqual({
      "final-recipient": "rfc822; carol@example.org",
      action: "failed",
      status: "5.7.1",
    });
  });

  test("Original-Recipient: ORCPT xtext decoded (RFC 3461 4.2)", async () => {
    for (const [orcpt, expected] of [
      ["rfc822;a+2Bb@x.test", "rfc822;a+b@x.test"],
      ["rfc822;a+3Db+2B+2Bc@x.test", "rfc822;a=b++c@x.test"],
      ["RFC822;plain@x.test", "RFC822;plain@x.test"],
      ["untyped@x.test", "rfc822;untyped@x.test"],
      // UTF-8 bytes in xtext come back as an RFC 6533 utf-8 address, ASCII in the report.
      ["rfc822;j+C3+BCrgen@x.test", "utf-8;j\\x{FC}rgen@x.test"],
    ]) {
      const email = await parse(
        buildDsn(input({ recipients: [{ ...bounce, originalRecipient: orcpt }] })).raw,
      );
      expect((await statusBlocks(email))[1]!["original-recipient"]).toBe(expected!);
    }
  });

  test("an ORCPT or ENVID that decodes to a line break cannot add a field", async () => {
    const dsn = buildDsn(
      input({
        envid: "x+0D+0AX-Evil:+201",
        recipients: [{ ...bounce, originalRecipient: "rfc822;a@x.test+0D+0AAction:+20delivered" }],
      }),
    );
    expectWireSafe(dsn.raw);
    const blocks = await statusBlocks(await parse(dsn.raw));
    expect(blocks[0]!["x-evil"]).toBeUndefined();
    expect(blocks[0]!["original-envelope-id"]).toBe("x X-Evil: 1");
    expect(blocks[1]!.action).toBe("failed");
    expect(blocks[1]!["original-recipient"]).toBe("rfc822;a@x.testAction: delivered");
  });

  test("Final-Recipient: a typed value is kept, a non-ASCII address becomes utf-8 with \\x{} escapes", async () => {
    const email = await parse(
      buildDsn(
        input({
          recipients: [
            { ...bounce, finalRecipient: "rfc822; <dave@example.org>", originalRecipient: undefined },
            { ...bounce, finalRecipient: "jürgen@bücher.example", originalRecipient: undefined },
          ],
        }),
      ).raw,
    );
    const blocks = await statusBlocks(email);
    expect(blocks[1]!["final-recipient"]).toBe("rfc822; dave@example.org");
    expect(blocks[2]!["final-recipient"]).toBe("utf-8; j\\x{FC}rgen@b\\x{FC}cher.example");
    expect(email.text).toContain("<jürgen@bücher.example>");
  });

  test("delayed: Will-Retry-Until and a 4.x.x status", async () => {
    const delayed: DsnRecipient = {
      finalRecipient: "bob@example.org",
      action: "delayed",
      status: "4.4.1",
      remoteMta: "mx1.example.org",
      diagnosticCode: "451 4.4.1 try again later",
      lastAttemptDate: ATTEMPT,
      willRetryUntil: UNTIL,
    };
    const email = await parse(buildDsn(input({ recipients: [delayed] })).raw);
    const [, r] = await statusBlocks(email);
    expect(r).toEqual({
      "final-recipient": "rfc822; bob@example.org",
      action: "delayed",
      status: "4.4.1",
      "remote-mta": "dns; mx1.example.org",
      "diagnostic-code": "smtp; 451 4.4.1 try again later",
      "last-attempt-date": rfc5322Date(ATTEMPT),
      "will-retry-until": rfc5322Date(UNTIL),
    });
    expect(email.text).toContain(`will retry until ${rfc5322Date(UNTIL)}`);
  });

  test("a multi-line remote reply stays one field; a very long one folds under 998 octets", async () => {
    const long = `550 5.7.1 ${"blocked ".repeat(300)}${"x".repeat(1500)} end`;
    const dsn = buildDsn(
      input({
        recipients: [
          { ...bounce, diagnosticCode: "550-5.1.1 first line\r\n550 5.1.1 second line" },
          { ...bounce, finalRecipient: "c@example.org", diagnosticCode: long },
        ],
      }),
    );
    expectWireSafe(dsn.raw);
    const blocks = await statusBlocks(await parse(dsn.raw));
    expect(blocks[1]!["diagnostic-code"]).toBe("smtp; 550-5.1.1 first line 550 5.1.1 second line");
    const unfolded = blocks[2]!["diagnostic-code"]!;
    // Folding at blanks loses nothing; the 1500-octet word had to be broken, and only there.
    expect(unfolded.replace(/\s+/g, "")).toBe(`smtp;${long.replace(/\s+/g, "")}`);
    expect(unfolded.startsWith(`smtp; 550 5.7.1 ${"blocked ".repeat(300)}`)).toBe(true);
  });
});

describe("buildDsn: the human-readable part", () => {
  test("names every recipient with the remote host's reply", async () => {
    const second: DsnRecipient = { finalRecipient: "carol@example.org", action: "failed", status: "5.7.1" };
    const email = await parse(buildDsn(input({ recipients: [bounce, second] })).raw);
    const text = email.text!.replace(/\n\s+/g, " ");
    expect(text).toContain(
      "<bob@example.org>: host mx1.example.org said: 550 5.1.1 <bob@example.org>: no such user",
    );
    expect(text).toContain("<carol@example.org>: status 5.7.1");
    expect(text).toContain("Your message is attached below.");
  });

  test("a UTF-8 remote reply reaches the text whole, in quoted-printable, and the report as ASCII", async () => {
    const dsn = buildDsn(
      input({ recipients: [{ ...bounce, diagnosticCode: "550 5.1.1 Postfach unbekannt: Müller" }] }),
    );
    expect(hasEightBit(dsn.raw)).toBe(false);
    const email = await parse(dsn.raw);
    expect(email.text!.replace(/\s+/g, " ")).toContain("550 5.1.1 Postfach unbekannt: Müller");
    expect((await statusBlocks(email))[1]!["diagnostic-code"]).toBe(
      "smtp; 550 5.1.1 Postfach unbekannt: M?ller",
    );
  });
});

describe("buildDsn: the returned message (RFC 3461 4.3, RFC 6522)", () => {
  test("RET=FULL: message/rfc822 with the original byte for byte", async () => {
    const dsn = buildDsn(input({ ret: "FULL" }));
    const part = thirdPart(dsn.raw);
    expect(part.headers).toBe("Content-Description: Undelivered Message\r\nContent-Type: message/rfc822");
    expect(part.content.equals(Buffer.from(ORIGINAL))).toBe(true);
    const email = await parse(dsn.raw);
    const returned = email.attachments.find((a) => a.mimeType === "message/rfc822")!;
    // postal-mime hands text parts back with LF line ends.
    expect(utf8(returned.content)).toBe(`${latin1(ORIGINAL).replace(/\r\n/g, "\n")}\n`);
  });

  test("no RET: the full message too", () => {
    const part = thirdPart(buildDsn(input()).raw);
    expect(part.headers).toContain("Content-Type: message/rfc822");
    expect(part.content.equals(Buffer.from(ORIGINAL))).toBe(true);
  });

  test("RET=HDRS: text/rfc822-headers with the header block only", async () => {
    const dsn = buildDsn(input({ ret: "HDRS" }));
    const part = thirdPart(dsn.raw);
    expect(part.headers).toBe("Content-Description: Message Headers\r\nContent-Type: text/rfc822-headers");
    expect(part.content.toString("latin1")).toBe(ORIGINAL_HEAD);
    const email = await parse(dsn.raw);
    expect(email.attachments.map((a) => a.mimeType)).toEqual([
      "message/delivery-status",
      "text/rfc822-headers",
    ]);
    expect(email.text).toContain("The headers of your message are attached below.");
    expect(email.text).not.toContain("the numbers are attached");
  });

  test("a sender not known to have sent it (no AUTH, no SPF pass): headers only, whatever RET says", () => {
    for (const ret of [undefined, "FULL"] as const) {
      const part = thirdPart(buildDsn(input({ ret, senderVerified: false })).raw);
      expect(part.headers).toContain("Content-Type: text/rfc822-headers");
      expect(part.content.toString("latin1")).toBe(ORIGINAL_HEAD);
    }
  });

  test("the size cap: a larger original comes back as headers, whatever RET says", async () => {
    for (const ret of [undefined, "FULL"] as const) {
      const dsn = buildDsn(input({ ret, maxReturnBytes: ORIGINAL.length - 1 }));
      expect(thirdPart(dsn.raw).headers).toContain("Content-Type: text/rfc822-headers");
      expect(thirdPart(dsn.raw).content.toString("latin1")).toBe(ORIGINAL_HEAD);
      const email = await parse(dsn.raw);
      expect(email.text!.replace(/\s+/g, " ")).toContain(
        `Your message was too large to return (${ORIGINAL.length} bytes)`,
      );
    }
    // At the cap exactly it still goes whole.
    const atCap = buildDsn(input({ maxReturnBytes: ORIGINAL.length }));
    expect(thirdPart(atCap.raw).content.equals(Buffer.from(ORIGINAL))).toBe(true);
  });

  test("the default cap is 1 MiB", () => {
    const body = `${"y".repeat(998)}\r\n`.repeat(Math.ceil((1024 * 1024) / 1000));
    const big = enc(`${ORIGINAL_HEAD}\r\n${body}`);
    expect(big.length).toBeGreaterThan(1024 * 1024);
    expect(thirdPart(buildDsn(input({ originalMessage: big })).raw).headers).toContain("text/rfc822-headers");
    const under = enc(`${ORIGINAL_HEAD}\r\n${body.slice(0, 1024 * 1024 - ORIGINAL_HEAD.length - 2)}`);
    expect(under.length).toBe(1024 * 1024);
    expect(thirdPart(buildDsn(input({ originalMessage: under })).raw).headers).toContain("message/rfc822");
  });

  test("notices without a failure carry only the headers, even with RET=FULL", () => {
    for (const [action, status] of [
      ["delayed", "4.4.1"],
      ["delivered", "2.0.0"],
      ["relayed", "2.0.0"],
      ["expanded", "2.0.0"],
    ] as const) {
      const dsn = buildDsn(input({ ret: "FULL", recipients: [{ ...bounce, action, status }] }));
      expect(thirdPart(dsn.raw).headers).toContain("Content-Type: text/rfc822-headers");
    }
  });

  test("an 8-bit original: 8bit declared on its part and on the whole report", async () => {
    const original = enc("From: a@example.test\r\nSubject: Grüße\r\n\r\nÄrger über Öl\r\n");
    const dsn = buildDsn(input({ originalMessage: original }));
    const part = thirdPart(dsn.raw);
    expect(part.headers).toContain("Content-Transfer-Encoding: 8bit");
    expect(part.content.equals(Buffer.from(original))).toBe(true);
    const email = await parse(dsn.raw);
    expect(header(email, "content-transfer-encoding")).toBe("8bit");
    expectWireSafe(dsn.raw);
    // Headers only still hold 8-bit bytes here.
    const hdrs = buildDsn(input({ originalMessage: original, ret: "HDRS" }));
    expect(thirdPart(hdrs.raw).headers).toContain("Content-Transfer-Encoding: 8bit");
  });

  test("a 7-bit original: the whole DSN is 7-bit and declares no 8bit", () => {
    const dsn = buildDsn(input());
    expect(hasEightBit(dsn.raw)).toBe(false);
    expect(latin1(dsn.raw)).not.toContain("8bit");
  });

  test("an original that cannot travel unchanged (bare LF, a line over 998) returns repaired headers", async () => {
    const longHeader = `X-Long: ${"z".repeat(1200)}`;
    for (const original of [
      enc("From: a@example.test\nSubject: lf only\n\nbody\n"),
      enc(`From: a@example.test\r\n${longHeader}\r\n\r\n${"b".repeat(1200)}\r\n`),
      enc(`From: a@example.test\r\nSubject: long lines\r\n\r\n${"b".repeat(1200)}\r\n`),
    ]) {
      const dsn = buildDsn(input({ originalMessage: original }));
      expectWireSafe(dsn.raw);
      const part = thirdPart(dsn.raw);
      expect(part.headers).toContain("Content-Type: text/rfc822-headers");
      expect(part.content.toString("latin1")).toStartWith("From: a@example.test\r\n");
      expect(part.content.toString("latin1")).not.toContain("body");
      const email = await parse(dsn.raw);
      expect(email.text).toContain("could not be returned unchanged");
    }
  });

  test("the boundary appears in no part", () => {
    const raw = latin1(buildDsn(input()).raw);
    const boundary = /boundary="([^"]+)"/.exec(raw)![1]!;
    // Once in the header, then the three part delimiters and the close one: nowhere else.
    expect(raw.split(boundary)).toHaveLength(6);
  });
});

describe("buildDsn: refusals", () => {
  test.each(["", "<>", " <> ", "MAILER-DAEMON@mx.example.org", "<mailer-daemon@example.org>"])(
    "never a DSN to %j",
    (sender) => {
      expect(() => buildDsn(input({ sender }))).toThrow(/null sender or MAILER-DAEMON/);
    },
  );

  test("no recipients, mixed events or a malformed status are a caller's bug", () => {
    expect(() => buildDsn(input({ recipients: [] }))).toThrow(/at least one recipient/);
    expect(() =>
      buildDsn(input({ recipients: [bounce, { ...bounce, action: "delayed", status: "4.4.1" }] })),
    ).toThrow(/one DSN per event/);
    expect(() => buildDsn(input({ recipients: [{ ...bounce, status: "550" }] }))).toThrow(/malformed status/);
  });
});

describe("isNullSender", () => {
  test.each<[string, boolean]>([
    ["", true],
    ["<>", true],
    ["  ", true],
    ["MAILER-DAEMON", true],
    ["MAILER-DAEMON@mx.example.org", true],
    ["<Mailer-Daemon@example.org>", true],
    ['"mailer-daemon"@example.org', true],
    ["alice@example.test", false],
    ["<alice@example.test>", false],
    ["postmaster@example.test", false],
    ["mailer-daemon-fan@example.test", false],
  ])("%j → %p", (from, expected) => {
    expect(isNullSender(from)).toBe(expected);
  });
});

describe("shouldNotify (RFC 3461 4.1)", () => {
  const actions: DsnAction[] = ["failed", "delayed", "delivered", "relayed", "expanded"];
  const cases: [string | null | undefined, DsnAction[]][] = [
    [undefined, ["failed", "delayed"]],
    [null, ["failed", "delayed"]],
    ["", ["failed", "delayed"]],
    ["NEVER", []],
    ["never", []],
    ["SUCCESS", ["delivered", "relayed", "expanded"]],
    ["FAILURE", ["failed"]],
    ["DELAY", ["delayed"]],
    ["SUCCESS,FAILURE", ["failed", "delivered", "relayed", "expanded"]],
    ["SUCCESS,DELAY", ["delayed", "delivered", "relayed", "expanded"]],
    ["FAILURE,DELAY", ["failed", "delayed"]],
    ["SUCCESS,FAILURE,DELAY", actions],
    ["delay, failure ,success", actions],
  ];
  for (const [notify, yes] of cases) {
    for (const action of actions) {
      const expected = yes.includes(action);
      test(`NOTIFY=${JSON.stringify(notify)} ${action} → ${expected}`, () => {
        expect(shouldNotify(notify, action)).toBe(expected);
      });
    }
  }
});

describe("decodeXtext", () => {
  test.each([
    ["plain", "plain"],
    ["a+2Bb", "a+b"],
    ["+3D+2b", "=+"],
    ["trailing+", "trailing+"],
    ["+ZZ", "+ZZ"],
    ["+C3+A9t+C3+A9", "été"],
  ])("%s → %s", (xtext, decoded) => {
    expect(decodeXtext(xtext)).toBe(decoded);
  });
});
