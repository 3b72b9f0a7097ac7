import { describe, expect, test } from "bun:test";
import {
  asXtext,
  encodeXtext,
  has8bit,
  headerSection,
  isSendableAddress,
  mailCommand,
  needsSmtputf8,
  notifyParam,
  orcptParam,
  rcptCommand,
} from "../../src/smtp/client-message.ts";
import { concat, MessageDecoder } from "../../src/smtp/data.ts";
import { encodeData, encodeDataAll, normalizedSize } from "../../src/smtp/dotstuff.ts";

// Binary strings: one char = one octet, so CR, LF and dots read plainly.
const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

describe("encodeData: CRLF normalisation and dot-stuffing", () => {
  const cases: [string, string, string][] = [
    ["empty message", "", ".\r\n"],
    ["ends with CRLF", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"],
    ["ends without a line end", "a\r\nb", "a\r\nb\r\n.\r\n"],
    ["a dot line", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"],
    ["line starting with a dot", ".hidden\r\n", "..hidden\r\n.\r\n"],
    ["line starting with two dots", "..x\r\n", "...x\r\n.\r\n"],
    ["dot inside a line", "a.b\r\n. \r\n", "a.b\r\n.. \r\n.\r\n"],
    ["dot alone at the very end", "a\r\n.", "a\r\n..\r\n.\r\n"],
    ["bare LF", "a\nb\n", "a\r\nb\r\n.\r\n"],
    ["bare LF then a dot", "a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"],
    ["bare CR", "a\rb\r", "a\r\nb\r\n.\r\n"],
    ["bare CR then a dot", "a\r.b", "a\r\n..b\r\n.\r\n"],
    ["CR CR LF", "a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"],
    ["LF CR", "a\n\rb", "a\r\n\r\nb\r\n.\r\n"],
    ["CR at the very end", "a\r", "a\r\n.\r\n"],
    ["only a line end", "\n", "\r\n.\r\n"],
    ["8-bit octets pass as they are", "\xe9t\xe9\r\n", "\xe9t\xe9\r\n.\r\n"],
    ["empty lines kept", "a\r\n\r\n\r\nb", "a\r\n\r\n\r\nb\r\n.\r\n"],
  ];
  for (const [name, input, want] of cases) {
    test(name, () => {
      expect(text(encodeDataAll(bytes(input)))).toBe(want);
      // SIZE= counts the normalised message: the wire bytes less stuffing and terminator.
      const stuffedDots = (want.match(/(^|\r\n)\.(?!\r\n$)/g) ?? []).length;
      expect(normalizedSize(bytes(input))).toBe(want.length - 3 - stuffedDots);
    });
  }

  test("pieces of the chunk size, whatever falls on the boundary", () => {
    const input = "..a\r\n.\nb\r.c\r\n\r\n..\r\nend";
    const whole = text(encodeDataAll(bytes(input)));
    for (let size = 1; size <= 12; size++) {
      const pieces = [...encodeData(bytes(input), size)];
      expect(pieces.map(text).join("")).toBe(whole);
      for (const p of pieces) expect(p.length).toBeLessThanOrEqual(size);
      expect(pieces.every((p) => p.length > 0)).toBe(true);
    }
  });

  test("a message that goes out as it is goes out as views into it, not copies", () => {
    const line = bytes(`${"x".repeat(76)}\r\n`);
    const input = new Uint8Array(200_000 * line.length);
    for (let at = 0; at < input.length; at += line.length) input.set(line, at);
    input[78] = 46; // a line starting with a dot: one octet stuffed, the rest still views
    const pieces = [...encodeData(input)];
    const views = pieces.filter((p) => p.buffer === input.buffer);
    expect(views.reduce((n, p) => n + p.length, 0)).toBe(input.length - 78);
    expect(pieces.length).toBeLessThanOrEqual(Math.ceil(input.length / (64 * 1024)) + 3);
    expect(Buffer.concat(pieces).equals(Buffer.from(encodeDataAll(input)))).toBe(true);
    expect(text(pieces.at(-1)!)).toBe(".\r\n");
    expect(text(pieces[0]!)).toBe(`${"x".repeat(76)}\r\n.`); // a short run before a fix is copied
  });

  test("fixes a few KiB apart: copied with their runs; far apart: a piece of its own size each", () => {
    const line = bytes(`${"x".repeat(98)}\r\n`);
    const input = new Uint8Array(2 * 1024 * 1024 - ((2 * 1024 * 1024) % line.length));
    const lines = input.length / line.length;
    // a dot line every 4.2 KiB: all gathered into 64 KiB pieces, as the old encoder did; every
    // 20 KiB: a view, a one-octet copy, a view...
    for (const [every, maxPieces] of [
      [42, Math.ceil(input.length / 65536) + 1],
      [200, 2 * Math.floor(lines / 200) + Math.ceil(input.length / 65536) + 1],
    ] as const) {
      for (let at = 0, n = 0; at < input.length; at += line.length, n++) {
        input.set(line, at);
        if (n % every === every - 1) input[at] = 46;
      }
      const pieces = [...encodeData(input)];
      expect(Buffer.concat(pieces).equals(Buffer.from(encodeDataAll(input)))).toBe(true);
      expect(pieces.length).toBeLessThanOrEqual(maxPieces);
      // no piece of a few octets keeps a 64 KiB buffer alive
      for (const p of pieces)
        if (p.buffer !== input.buffer)
          expect(p.buffer.byteLength <= 4 * p.length || p.length >= 16384).toBe(true);
    }
  });

  test("a message of short lines to fix goes out gathered, not a write per line", () => {
    const input = bytes("line of a message with bare LFs\n".repeat(20_000));
    const pieces = [...encodeData(input)];
    const wire = Buffer.concat(pieces);
    expect(wire.length).toBe(input.length + 20_000 + 3);
    expect(pieces.length).toBe(Math.ceil(wire.length / (64 * 1024)));
  });

  test("a 3 MB message goes out in 64 KiB pieces", () => {
    const input = new Uint8Array(3 * 1024 * 1024).fill(0x61);
    for (let i = 0; i < input.length; i += 100) input[i] = 10;
    const pieces = [...encodeData(input)];
    expect(pieces.length).toBeGreaterThan(40);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThanOrEqual(64 * 1024 + 2);
  });

  test("round trip through our server's decoder: the normalised message comes back", () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const alphabet = [13, 10, 46, 46, 97, 98, 0xe9, 32];
    for (let round = 0; round < 300; round++) {
      const input = new Uint8Array(rand() % 60).map(() => alphabet[rand() % alphabet.length]!);
      const wire = encodeDataAll(input);
      const decoder = new MessageDecoder(1_000_000, true);
      expect(decoder.push(wire)).toBe(wire.length);
      const r = decoder.result();
      expect(r.bareLf).toBe(false);
      expect(r.bareCr).toBe(false);
      const got = text(concat(r.chunks));
      const normalised = text(input).replace(/\r\n|\r|\n/g, "\r\n");
      const want = normalised === "" || normalised.endsWith("\r\n") ? normalised : `${normalised}\r\n`;
      expect(got).toBe(want);
      expect(normalizedSize(input)).toBe(want.length);
    }
  });
});

describe("message checks", () => {
  test("has8bit", () => {
    expect(has8bit(bytes("plain ascii\r\n"))).toBe(false);
    expect(has8bit(bytes("caf\xe9"))).toBe(true);
    expect(has8bit(bytes("\x7f"))).toBe(false);
    expect(has8bit(new Uint8Array(0))).toBe(false);
  });

  test("headerSection ends at the first empty line, whatever the line ends", () => {
    expect(text(headerSection(bytes("A: 1\r\nB: 2\r\n\r\nbody\r\n")))).toBe("A: 1\r\nB: 2\r\n");
    expect(text(headerSection(bytes("A: 1\nB: 2\n\nbody")))).toBe("A: 1\nB: 2\n");
    expect(text(headerSection(bytes("A: 1\r\n\nbody")))).toBe("A: 1\r\n");
    expect(text(headerSection(bytes("A: 1\r\n")))).toBe("A: 1\r\n");
    expect(text(headerSection(bytes("\r\nbody")))).toBe("");
  });

  const utf8 = (s: string) => new Uint8Array(Buffer.from(s, "utf8"));
  const cases: [string, string, string[], Uint8Array, boolean][] = [
    ["all ASCII", "a@x.test", ["b@y.test"], utf8("Subject: hi\r\n\r\nbody\r\n"), false],
    ["null sender", "", ["b@y.test"], utf8("Subject: hi\r\n\r\n"), false],
    ["UTF-8 sender", "jöran@x.test", ["b@y.test"], utf8("Subject: hi\r\n\r\n"), true],
    ["UTF-8 recipient domain", "a@x.test", ["b@y.test", "c@bücher.test"], utf8("S: x\r\n\r\n"), true],
    ["UTF-8 in a header", "a@x.test", ["b@y.test"], utf8("Subject: Grüße\r\n\r\nbody\r\n"), true],
    [
      "UTF-8 in the body only (8BITMIME's business)",
      "a@x.test",
      ["b@y.test"],
      utf8("S: x\r\n\r\nGrüße\r\n"),
      false,
    ],
    ["raw Latin-1 header is not UTF-8", "a@x.test", ["b@y.test"], bytes("Subject: caf\xe9\r\n\r\n"), false],
  ];
  for (const [name, from, to, data, want] of cases) {
    test(`needsSmtputf8: ${name}`, () => {
      expect(needsSmtputf8(from, to, data)).toBe(want);
    });
  }

  test("isSendableAddress refuses control characters (command injection)", () => {
    expect(isSendableAddress("a@x.test")).toBe(true);
    expect(isSendableAddress('"a b"@x.test')).toBe(true);
    expect(isSendableAddress("")).toBe(true);
    expect(isSendableAddress("a@x.test>\r\nRCPT TO:<evil@y.test")).toBe(false);
    expect(isSendableAddress("a\0@x.test")).toBe(false);
  });
});

describe("command lines", () => {
  test("MAIL with every parameter, and bare", () => {
    expect(
      mailCommand("a@x.test", {
        size: 1234,
        eightBitMime: true,
        smtputf8: true,
        dsn: { ret: "HDRS", envid: "QQ314159" },
      }),
    ).toBe("MAIL FROM:<a@x.test> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159\r\n");
    expect(mailCommand("", { size: undefined, eightBitMime: false, smtputf8: false, dsn: undefined })).toBe(
      "MAIL FROM:<>\r\n",
    );
    expect(mailCommand("a@x.test", { size: undefined, eightBitMime: false, smtputf8: false, dsn: {} })).toBe(
      "MAIL FROM:<a@x.test>\r\n",
    );
  });

  test("RCPT with DSN parameters", () => {
    expect(rcptCommand("b@y.test", { notify: "success,failure", orcpt: "rfc822;b@y.test" })).toBe(
      "RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.test\r\n",
    );
    expect(rcptCommand("b@y.test", undefined)).toBe("RCPT TO:<b@y.test>\r\n");
    expect(rcptCommand("b@y.test", { notify: "NEVER,SUCCESS" })).toBe("RCPT TO:<b@y.test>\r\n");
  });

  test("xtext", () => {
    expect(encodeXtext("a+b=c d")).toBe("a+2Bb+3Dc+20d");
    expect(encodeXtext("é")).toBe("+C3+A9");
    expect(asXtext("already+2Bxtext")).toBe("already+2Bxtext");
    expect(asXtext("not xtext")).toBe("not+20xtext");
    expect(orcptParam("rfc822;a+b@x.test")).toBe("rfc822;a+2Bb@x.test");
    expect(orcptParam("a@x.test")).toBe("rfc822;a@x.test");
    expect(orcptParam("rfc822;a+2Bb@x.test")).toBe("rfc822;a+2Bb@x.test");
  });

  test("an ORCPT whose addr-type is not an atom is not passed on; no CR or LF ever rides in a parameter", () => {
    expect(orcptParam("rfc822\rQUIT\t<>;a+2Bb")).toBeUndefined();
    expect(rcptCommand("b@y.test", { orcpt: "rfc822\rQUIT\t<>;a+2Bb" })).toBe("RCPT TO:<b@y.test>\r\n");
    expect(rcptCommand("b@y.test", { orcpt: "x-type;a\r\nQUIT" })).toBe(
      "RCPT TO:<b@y.test> ORCPT=x-type;a+0D+0AQUIT\r\n",
    );
    const mail = mailCommand("a@x.test", {
      size: undefined,
      eightBitMime: false,
      smtputf8: false,
      dsn: { envid: "id\r\nRCPT TO:<evil@x.test>" },
    });
    expect(mail).toBe("MAIL FROM:<a@x.test> ENVID=id+0D+0ARCPT+20TO:<evil@x.test>\r\n");
  });

  test("notifyParam", () => {
    expect(notifyParam("never")).toBe("NEVER");
    expect(notifyParam("FAILURE,DELAY,FAILURE")).toBe("FAILURE,DELAY");
    expect(notifyParam("SOMETIMES")).toBeUndefined();
    expect(notifyParam("")).toBeUndefined();
  });
});
