import { describe, expect, test } from "bun:test";
import { type Command, isValidDomain, parseCommand, parseMailbox } from "../../src/smtp/command.ts";

/** The command, or a failure naming the reply that came back instead. */
function parsed(line: string): Command {
  const p = parseCommand(line);
  if (!p.ok) throw new Error(`"${line}" was refused: ${p.reply.code} ${p.reply.status} ${p.reply.lines[0]}`);
  return p.command;
}

/** "code status" of the refusal, or "ok" when the line parsed. */
function refusal(line: string): string {
  const p = parseCommand(line);
  return p.ok ? "ok" : `${p.reply.code} ${p.reply.status}`;
}

describe("verbs", () => {
  test.each<[string, Command]>([
    ["EHLO client.test", { verb: "EHLO", domain: "client.test" }],
    ["ehlo client.test", { verb: "EHLO", domain: "client.test" }],
    ["HELO client.test", { verb: "HELO", domain: "client.test" }],
    ["EHLO  client.test", { verb: "EHLO", domain: "client.test" }],
    ["EHLO client.test some trailing words", { verb: "EHLO", domain: "client.test" }],
    ["EHLO client.test.", { verb: "EHLO", domain: "client.test." }],
    ["EHLO localhost", { verb: "EHLO", domain: "localhost" }],
    ["EHLO [192.0.2.1]", { verb: "EHLO", domain: "[192.0.2.1]" }],
    ["EHLO [IPv6:2001:db8::1]", { verb: "EHLO", domain: "[IPv6:2001:db8::1]" }],
    ["EHLO bücher.test", { verb: "EHLO", domain: "bücher.test" }],
    ["MAIL FROM:<a@b.test>", { verb: "MAIL", address: "a@b.test", params: {} }],
    ["RCPT TO:<a@b.test>", { verb: "RCPT", address: "a@b.test", params: {} }],
    ["DATA", { verb: "DATA" }],
    ["data", { verb: "DATA" }],
    ["RSET", { verb: "RSET" }],
    ["NOOP", { verb: "NOOP" }],
    ["NOOP whatever it says", { verb: "NOOP" }],
    ["QUIT", { verb: "QUIT" }],
    ["STARTTLS", { verb: "STARTTLS" }],
    ["HELP", { verb: "HELP" }],
    ["HELP MAIL", { verb: "HELP" }],
    ["VRFY alice", { verb: "VRFY", argument: "alice" }],
    ["VRFY <alice@example.test>", { verb: "VRFY", argument: "<alice@example.test>" }],
    ["BDAT 100", { verb: "BDAT", size: 100, last: false }],
    ["BDAT 0 LAST", { verb: "BDAT", size: 0, last: true }],
    ["bdat 5 last", { verb: "BDAT", size: 5, last: true }],
    ["BDAT 5  LAST  ", { verb: "BDAT", size: 5, last: true }],
    ["BDAT 999999999999999", { verb: "BDAT", size: 999999999999999, last: false }],
    ["AUTH PLAIN", { verb: "AUTH", mechanism: "PLAIN", initialResponse: undefined }],
    ["auth login", { verb: "AUTH", mechanism: "LOGIN", initialResponse: undefined }],
    [
      "AUTH plain AGFAYi50ZXN0AHB3",
      { verb: "AUTH", mechanism: "PLAIN", initialResponse: "AGFAYi50ZXN0AHB3" },
    ],
    ["AUTH LOGIN dXNlcg==", { verb: "AUTH", mechanism: "LOGIN", initialResponse: "dXNlcg==" }],
    ["AUTH PLAIN =", { verb: "AUTH", mechanism: "PLAIN", initialResponse: "=" }],
    ["AUTH CRAM-MD5", { verb: "AUTH", mechanism: "CRAM-MD5", initialResponse: undefined }],
  ])("%p parses", (line, command) => {
    expect(parsed(line)).toEqual(command);
  });

  test.each([
    ["", "500 5.5.2"],
    ["FOO", "500 5.5.2"],
    ["FOO bar", "500 5.5.2"],
    ["MAILX FROM:<a@b.test>", "500 5.5.2"],
    ["TURN", "500 5.5.2"],
    ["ETRN example.test", "500 5.5.2"],
    [" MAIL FROM:<a@b.test>", "500 5.5.2"],
    ["EHLO", "501 5.5.4"],
    ["EHLO ", "501 5.5.4"],
    ["HELO    ", "501 5.5.4"],
    ["EHLO bad_host", "501 5.5.4"],
    ["EHLO -a.test", "501 5.5.4"],
    ["EHLO a..test", "501 5.5.4"],
    ["EHLO [::1]", "501 5.5.4"],
    ["EHLO [not.an.ip]", "501 5.5.4"],
    [`EHLO ${"a".repeat(256)}`, "501 5.5.4"],
    ["DATA now", "501 5.5.4"],
    ["RSET x", "501 5.5.4"],
    ["QUIT now", "501 5.5.4"],
    ["STARTTLS x", "501 5.5.4"],
    ["BDAT", "501 5.5.4"],
    ["BDAT x", "501 5.5.4"],
    ["BDAT -1", "501 5.5.4"],
    ["BDAT 1.5", "501 5.5.4"],
    ["BDAT 5 NOTLAST", "501 5.5.4"],
    ["BDAT 5 LAST extra", "501 5.5.4"],
    ["BDAT 1234567890123456", "501 5.5.4"],
    ["AUTH", "501 5.5.4"],
    ["AUTH ", "501 5.5.4"],
    ["AUTH PLAIN abc def", "501 5.5.4"],
  ])("%p is refused with %s", (line, expected) => {
    expect(refusal(line)).toBe(expected);
  });

  test("a refusal carries a reply text to send", () => {
    const p = parseCommand("EHLO");
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.reply.lines[0]).toContain("EHLO");
  });
});

describe("MAIL and RCPT paths", () => {
  test.each([
    ["MAIL FROM:<a@b.test>", "a@b.test"],
    ["mail from:<a@b.test>", "a@b.test"],
    ["MAIL From:<a@b.test>", "a@b.test"],
    ["MAIL FROM: <a@b.test>", "a@b.test"],
    ["MAIL FROM:<>", ""],
    ["MAIL FROM:<> SIZE=100", ""],
    ["MAIL FROM:<Alice.Smith+tag@Example.TEST>", "Alice.Smith+tag@Example.TEST"],
    ["MAIL FROM:<@relay.test:a@b.test>", "a@b.test"],
    ["MAIL FROM:<@r1.test,@r2.test:a@b.test>", "a@b.test"],
    ['MAIL FROM:<"john doe"@b.test>', '"john doe"@b.test'],
    ['MAIL FROM:<"a\\"b"@b.test>', '"a\\"b"@b.test'],
    ['MAIL FROM:<"a@b"@c.test>', '"a@b"@c.test'],
    ['MAIL FROM:<""@b.test>', '""@b.test'],
    ["MAIL FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]"],
    ["MAIL FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]"],
    ["MAIL FROM:<ü@bücher.test>", "ü@bücher.test"],
    ["MAIL FROM:<a@localhost>", "a@localhost"],
    [`MAIL FROM:<${"l".repeat(64)}@b.test>`, `${"l".repeat(64)}@b.test`],
    ["RCPT TO:<b@c.test>", "b@c.test"],
    ["rcpt to:<b@c.test>", "b@c.test"],
    ["RCPT TO: <b@c.test>", "b@c.test"],
    ["RCPT TO:<@hop.test:b@c.test>", "b@c.test"],
    ['RCPT TO:<"x y"@c.test>', '"x y"@c.test'],
    ["RCPT TO:<b@[198.51.100.9]>", "b@[198.51.100.9]"],
  ])("%p → <%s>", (line, address) => {
    const c = parsed(line);
    expect(c.verb === "MAIL" || c.verb === "RCPT").toBe(true);
    if (c.verb === "MAIL" || c.verb === "RCPT") expect(c.address).toBe(address);
  });

  test.each([
    ["MAIL", "no FROM:"],
    ["MAIL FROM", "no colon"],
    ["MAIL TO:<a@b.test>", "wrong keyword"],
    ["MAIL FROM:a@b.test", "missing brackets"],
    ["MAIL FROM: a@b.test", "missing brackets after a space"],
    ["MAIL FROM:<a@b.test", "missing >"],
    ["MAIL FROM:a@b.test>", "missing <"],
    ["MAIL FROM:<a@b.test>SIZE=10", "no space before the parameters"],
    ["MAIL FROM:<a>", "no domain"],
    ["MAIL FROM:<a@>", "empty domain"],
    ["MAIL FROM:<@b.test>", "source route without a mailbox"],
    ["MAIL FROM:<a..b@c.test>", "double dot in the local part"],
    ["MAIL FROM:<.a@c.test>", "leading dot in the local part"],
    ["MAIL FROM:<a b@c.test>", "space in the local part"],
    ['MAIL FROM:<"open@c.test>', "unterminated quoted local part"],
    ["MAIL FROM:<a@-c.test>", "domain label starting with a hyphen"],
    ["MAIL FROM:<a@c_d.test>", "underscore in the domain"],
    ["MAIL FROM:<a@[1.2.3.4>", "unterminated address literal"],
    ["MAIL FROM:<a@[::1]>", "IPv6 literal without the tag"],
    [`MAIL FROM:<${"l".repeat(65)}@b.test>`, "local part over 64 octets"],
    ["RCPT TO:<>", "null path on RCPT"],
    ["RCPT TO:<> NOTIFY=NEVER", "null path on RCPT with parameters"],
    ["RCPT TO:b@c.test", "missing brackets"],
    ["RCPT FROM:<b@c.test>", "wrong keyword"],
    ["RCPT TO:<b@c.test", "missing >"],
    ["RCPT", "no TO:"],
  ])("%p → 501 5.5.4 (%s)", (line) => {
    expect(refusal(line)).toBe("501 5.5.4");
  });

  test("a quoted local part may hold '>' (RFC 5321 Quoted-string)", () => {
    expect(parsed('MAIL FROM:<"a>b"@c.test> SIZE=5')).toEqual({
      verb: "MAIL",
      address: '"a>b"@c.test',
      params: { size: 5 },
    });
    expect(parsed('RCPT TO:<"x>y"@c.test>')).toEqual({ verb: "RCPT", address: '"x>y"@c.test', params: {} });
  });
});

describe("MAIL parameters", () => {
  test.each([
    ["SIZE=1000", { size: 1000 }],
    ["size=0", { size: 0 }],
    ["SIZE=999999999999999", { size: 999999999999999 }],
    ["BODY=8BITMIME", { body: "8BITMIME" }],
    ["body=7bit", { body: "7BIT" }],
    ["SMTPUTF8", { smtputf8: true }],
    ["smtputf8", { smtputf8: true }],
    ["RET=FULL", { ret: "FULL" }],
    ["ret=hdrs", { ret: "HDRS" }],
    ["ENVID=QQ314159", { envid: "QQ314159" }],
    ["ENVID=a+2Bb+3Dc", { envid: "a+2Bb+3Dc" }],
    [`ENVID=${"x".repeat(100)}`, { envid: "x".repeat(100) }],
    ["AUTH=<>", {}],
    ["AUTH=alice+40example.test", {}],
    [
      "SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1",
      { size: 10, body: "8BITMIME", smtputf8: true, ret: "HDRS", envid: "id1" },
    ],
    ["SIZE=10   BODY=7BIT", { size: 10, body: "7BIT" }],
    ["SIZE=10 ", { size: 10 }],
  ])("MAIL FROM:<a@b.test> %s", (params, expected) => {
    expect(parsed(`MAIL FROM:<a@b.test> ${params}`)).toEqual({
      verb: "MAIL",
      address: "a@b.test",
      params: expected as never,
    });
  });

  test.each([
    ["SIZE", "501 5.5.4"],
    ["SIZE=", "501 5.5.4"],
    ["SIZE=abc", "501 5.5.4"],
    ["SIZE=-1", "501 5.5.4"],
    ["SIZE=1e3", "501 5.5.4"],
    ["SIZE=1234567890123456", "501 5.5.4"],
    ["BODY", "555 5.5.4"],
    ["BODY=BINARYMIME", "555 5.5.4"],
    ["BODY=8BIT", "555 5.5.4"],
    ["SMTPUTF8=yes", "555 5.5.4"],
    ["SMTPUTF8=", "555 5.5.4"],
    ["RET", "555 5.5.4"],
    ["RET=ALL", "555 5.5.4"],
    ["ENVID", "555 5.5.4"],
    ["ENVID=", "555 5.5.4"],
    ["ENVID=a+2b", "555 5.5.4"],
    ["ENVID=a+", "555 5.5.4"],
    ["ENVID=a+G0", "555 5.5.4"],
    ["ENVID=a=b", "555 5.5.4"],
    ["ENVID=a+b", "555 5.5.4"],
    ["ENVID=é", "555 5.5.4"],
    [`ENVID=${"x".repeat(101)}`, "555 5.5.4"],
    ["FOO=bar", "555 5.5.4"],
    ["XYZZY", "555 5.5.4"],
    ["=1", "555 5.5.4"],
    ["NOTIFY=NEVER", "555 5.5.4"],
    ["ORCPT=rfc822;a@b.test", "555 5.5.4"],
    ["SIZE=10 FOO=bar", "555 5.5.4"],
  ])("MAIL FROM:<a@b.test> %s → %s", (params, expected) => {
    expect(refusal(`MAIL FROM:<a@b.test> ${params}`)).toBe(expected);
  });
});

describe("RCPT parameters", () => {
  test.each([
    ["NOTIFY=NEVER", { notify: ["NEVER"] }],
    ["NOTIFY=SUCCESS", { notify: ["SUCCESS"] }],
    ["NOTIFY=FAILURE", { notify: ["FAILURE"] }],
    ["NOTIFY=DELAY", { notify: ["DELAY"] }],
    ["NOTIFY=SUCCESS,FAILURE", { notify: ["SUCCESS", "FAILURE"] }],
    ["NOTIFY=SUCCESS,FAILURE,DELAY", { notify: ["SUCCESS", "FAILURE", "DELAY"] }],
    ["notify=delay,failure", { notify: ["DELAY", "FAILURE"] }],
    ["ORCPT=rfc822;bob@c.test", { orcpt: "rfc822;bob@c.test" }],
    ["ORCPT=rfc822;b+2Bob@c.test", { orcpt: "rfc822;b+2Bob@c.test" }],
    ["ORCPT=utf-8;b\\x{E9}@c.test", { orcpt: "utf-8;b\\x{E9}@c.test" }],
    [
      "NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@c.test",
      { notify: ["FAILURE", "DELAY"], orcpt: "rfc822;bob@c.test" },
    ],
  ])("RCPT TO:<b@c.test> %s", (params, expected) => {
    expect(parsed(`RCPT TO:<b@c.test> ${params}`)).toEqual({
      verb: "RCPT",
      address: "b@c.test",
      params: expected as never,
    });
  });

  test.each([
    ["NOTIFY", "no value"],
    ["NOTIFY=", "empty value"],
    ["NOTIFY=NEVER,SUCCESS", "NEVER with SUCCESS"],
    ["NOTIFY=FAILURE,NEVER", "NEVER with FAILURE"],
    ["NOTIFY=NEVER,DELAY", "NEVER with DELAY"],
    ["NOTIFY=NEVER,NEVER", "NEVER twice"],
    ["NOTIFY=SOMETIMES", "unknown keyword"],
    ["NOTIFY=SUCCESS,", "empty item"],
    ["NOTIFY=SUCCESS;FAILURE", "wrong separator"],
    ["ORCPT", "no value"],
    ["ORCPT=bob@c.test", "no addr-type"],
    ["ORCPT=;bob@c.test", "empty addr-type"],
    ["ORCPT=rfc822;a=b@c.test", "'=' is not xtext"],
    ["ORCPT=rfc822;a+2g@c.test", "bad xtext hex"],
    [`ORCPT=rfc822;${"x".repeat(500)}@c.test`, "over 500 octets"],
    ["SIZE=10", "a MAIL parameter"],
    ["BODY=8BITMIME", "a MAIL parameter"],
    ["RET=FULL", "a MAIL parameter"],
    ["FOO", "unknown"],
  ])("RCPT TO:<b@c.test> %s → 555 5.5.4 (%s)", (params) => {
    expect(refusal(`RCPT TO:<b@c.test> ${params}`)).toBe("555 5.5.4");
  });

  test.each([
    ["ORCPT=rfc822\rQUIT\t<>;a+2Bb", "a CR and a TAB"],
    ["ORCPT=rfc<822>;a@b.test", "angle brackets"],
    ["ORCPT=rfc822.x;a@b.test", "a dot"],
    ['ORCPT="rfc822";a@b.test', "quotes"],
    ["ORCPT=r\u00e9c;a@b.test", "non-ASCII"],
  ])("RCPT TO:<b@c.test> %s → 501 5.5.4: the addr-type is not an atom (%s)", (params) => {
    expect(refusal(`RCPT TO:<b@c.test> ${params}`)).toBe("501 5.5.4");
  });

  test.each(["NOOP\r", "NO\rOP", "MAIL\tFROM:<a@b.test>", "HELO a\x0b.test", "QUIT\x7f", "RSET\n"])(
    "a control character anywhere in %p → 501 5.5.4",
    (line) => {
      expect(refusal(line)).toBe("501 5.5.4");
    },
  );
});

describe("syntax helpers", () => {
  test.each([
    ["example.test", true],
    ["a.b.c.example.test", true],
    ["a-b.test", true],
    ["localhost", true],
    ["example.test.", true],
    ["[192.0.2.1]", true],
    ["[IPv6:::1]", true],
    ["-a.test", false],
    ["a-.test", false],
    ["a..test", false],
    [".a.test", false],
    ["a_b.test", false],
    ["", false],
    ["[1.2.3.4", false],
    [`${"a.".repeat(126)}abc`, true],
    [`${"a.".repeat(128)}`, false],
  ])("isValidDomain(%p) is %p", (domain, valid) => {
    expect(isValidDomain(domain)).toBe(valid);
  });

  test.each([
    ["a@b.test", "a@b.test"],
    ['"q q"@b.test', '"q q"@b.test'],
    ["a@b@c.test", undefined],
    ["@b.test", undefined],
    ["a@", undefined],
    ["nobody", undefined],
  ])("parseMailbox(%p) is %p", (text, expected) => {
    expect(parseMailbox(text)).toBe(expected);
  });

  // A hostile EHLO or MAIL FROM domain must not make the domain check backtrack exponentially:
  // the whole server runs on one thread.
  test.each([
    ["EHLO", `EHLO ${"a".repeat(28)}!`],
    ["EHLO with hyphens", `EHLO ${"a-".repeat(20)}a!`],
    ["MAIL FROM", `MAIL FROM:<x@${"a".repeat(28)}!>`],
    ["RCPT TO", `RCPT TO:<x@${"ab".repeat(14)}_>`],
  ])("a long invalid domain (%s) is refused at once", (_name, line) => {
    const started = performance.now();
    expect(refusal(line)).toBe("501 5.5.4");
    expect(performance.now() - started).toBeLessThan(200);
  });
});
