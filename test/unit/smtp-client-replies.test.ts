import { describe, expect, test } from "bun:test";
import {
  formatClientReply,
  MAX_REPLY_LINE_OCTETS,
  makeReply,
  parseExtensions,
  ReplyParser,
  ReplySyntaxError,
  sizeLimit,
  splitEnhanced,
} from "../../src/smtp/client-replies.ts";

const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

/** Feeds `pieces` in turn and returns every reply, as {code, enhanced, text, lines}. */
function parse(...pieces: string[]) {
  const p = new ReplyParser();
  return pieces.flatMap((piece) => p.push(bytes(piece)));
}

describe("ReplyParser", () => {
  const cases: [
    string,
    string[],
    { code: number; enhanced: string | undefined; text: string; lines: string[] }[],
  ][] = [
    ["one line", ["250 Ok\r\n"], [{ code: 250, enhanced: undefined, text: "Ok", lines: ["Ok"] }]],
    [
      "enhanced code",
      ["250 2.1.0 Sender ok\r\n"],
      [{ code: 250, enhanced: "2.1.0", text: "Sender ok", lines: ["Sender ok"] }],
    ],
    [
      "multiline, enhanced code on every line",
      ["550-5.1.1 No such user here\r\n550-5.1.1 see https://x.test/a\r\n550 5.1.1 bye\r\n"],
      [
        {
          code: 550,
          enhanced: "5.1.1",
          text: "No such user here see https://x.test/a bye",
          lines: ["No such user here", "see https://x.test/a", "bye"],
        },
      ],
    ],
    [
      "multiline split anywhere",
      ["45", "1-4.7.1 Gre", "ylisted\r", "\n451 4.7.1 try ", "later\r\n"],
      [{ code: 451, enhanced: "4.7.1", text: "Greylisted try later", lines: ["Greylisted", "try later"] }],
    ],
    [
      "two replies in one read (pipelining)",
      ["250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"],
      [
        { code: 250, enhanced: "2.1.0", text: "Ok", lines: ["Ok"] },
        { code: 250, enhanced: "2.1.5", text: "Ok", lines: ["Ok"] },
        { code: 354, enhanced: undefined, text: "go ahead", lines: ["go ahead"] },
      ],
    ],
    [
      "class of the enhanced code must agree with the reply",
      ["550 4.1.1 odd\r\n"],
      [{ code: 550, enhanced: undefined, text: "4.1.1 odd", lines: ["4.1.1 odd"] }],
    ],
    [
      "version-like text is not an enhanced code",
      ["220 2.6.32-generic ready\r\n"],
      [{ code: 220, enhanced: undefined, text: "2.6.32-generic ready", lines: ["2.6.32-generic ready"] }],
    ],
    ["bare code", ["250\r\n"], [{ code: 250, enhanced: undefined, text: "", lines: [""] }]],
    [
      "code and space only (smtp-sink)",
      ["250 \r\n"],
      [{ code: 250, enhanced: undefined, text: "", lines: [""] }],
    ],
    [
      "LF-only line ends",
      ["250-a\n250 b\n"],
      [{ code: 250, enhanced: undefined, text: "a b", lines: ["a", "b"] }],
    ],
    [
      "leading zeros in the enhanced code are dropped",
      ["250 2.01.005 Ok\r\n"],
      [{ code: 250, enhanced: "2.1.5", text: "Ok", lines: ["Ok"] }],
    ],
    ["incomplete reply waits", ["250-a\r\n250 b"], []],
  ];
  for (const [name, pieces, want] of cases) {
    test(name, () => {
      expect(parse(...pieces)).toEqual(want);
    });
  }

  test("UTF-8 text is decoded", () => {
    const p = new ReplyParser();
    const [r] = p.push(new Uint8Array(Buffer.from("250 2.0.0 Grüße\r\n", "utf8")));
    expect(r!.text).toBe("Grüße");
  });

  const garbage: [string, string][] = [
    ["not a reply line", "HTTP/1.1 400 Bad Request\r\n"],
    ["code too short", "25 Ok\r\n"],
    ["four digits", "2500 Ok\r\n"],
    ["1xx is not SMTP", "150 Ok\r\n"],
    ["no separator", "250Ok\r\n"],
    ["empty line", "\r\n"],
    ["multiline changes its code", "250-a\r\n550 b\r\n"],
  ];
  for (const [name, input] of garbage) {
    test(`protocol error: ${name}`, () => {
      expect(() => parse(input)).toThrow(ReplySyntaxError);
    });
  }

  test("a line over the limit is an error, with or without its line end", () => {
    const long = `250 ${"x".repeat(MAX_REPLY_LINE_OCTETS)}`;
    expect(() => parse(`${long}\r\n`)).toThrow(ReplySyntaxError);
    // Never a line end: the parser stops at the limit instead of buffering on.
    const p = new ReplyParser();
    expect(() => {
      for (let i = 0; i < 100; i++) p.push(bytes("x".repeat(100)));
    }).toThrow(ReplySyntaxError);
    expect(p.pending).toBeLessThan(MAX_REPLY_LINE_OCTETS);
  });

  test("a line of 600 octets (over RFC 5321's 512, under our limit) is read", () => {
    const text = "y".repeat(596);
    expect(parse(`550 ${text}\r\n`)[0]!.text).toBe(text);
  });

  test("endless multiline reply is an error", () => {
    expect(() => parse("250-x\r\n".repeat(300))).toThrow(ReplySyntaxError);
  });
});

describe("reply helpers", () => {
  test("splitEnhanced", () => {
    expect(splitEnhanced(451, "4.7.1 Greylisted")).toEqual({ enhanced: "4.7.1", rest: "Greylisted" });
    expect(splitEnhanced(451, "4.7.1")).toEqual({ enhanced: "4.7.1", rest: "" });
    expect(splitEnhanced(451, "4.7.1x")).toEqual({ enhanced: undefined, rest: "4.7.1x" });
    expect(splitEnhanced(250, "5.0.0 x")).toEqual({ enhanced: undefined, rest: "5.0.0 x" });
  });

  test("makeReply keeps lines without the code as they are", () => {
    expect(makeReply(250, ["2.0.0 first", "second"])).toEqual({
      code: 250,
      enhanced: "2.0.0",
      text: "first second",
      lines: ["first", "second"],
    });
  });

  test("formatClientReply", () => {
    expect(formatClientReply({ code: 550, enhanced: "5.1.1", text: "No such user" })).toBe(
      "550 5.1.1 No such user",
    );
    expect(formatClientReply({ code: 250, enhanced: undefined, text: "" })).toBe("250");
  });
});

describe("parseExtensions", () => {
  const ehlo = (...lines: string[]) => makeReply(250, lines);

  test("keywords upper-cased with their parameters; greeting line skipped", () => {
    const ext = parseExtensions(
      ehlo("mx.test Hello", "pipelining", "SIZE 35882577", "8BITMIME", "AUTH PLAIN LOGIN", "STARTTLS", ""),
    );
    expect([...ext.entries()]).toEqual([
      ["PIPELINING", ""],
      ["SIZE", "35882577"],
      ["8BITMIME", ""],
      ["AUTH", "PLAIN LOGIN"],
      ["STARTTLS", ""],
    ]);
  });

  test("old AUTH= form counts only when there is no AUTH line", () => {
    expect(parseExtensions(ehlo("h", "AUTH=LOGIN")).get("AUTH")).toBe("LOGIN");
    expect(parseExtensions(ehlo("h", "AUTH PLAIN", "AUTH=LOGIN")).get("AUTH")).toBe("PLAIN");
    expect(parseExtensions(ehlo("h", "AUTH=LOGIN", "AUTH PLAIN")).get("AUTH")).toBe("PLAIN");
  });

  test("sizeLimit", () => {
    expect(sizeLimit(parseExtensions(ehlo("h", "SIZE 1000")))).toBe(1000);
    expect(sizeLimit(parseExtensions(ehlo("h", "SIZE")))).toBeUndefined();
    expect(sizeLimit(parseExtensions(ehlo("h", "SIZE 0")))).toBeUndefined();
    expect(sizeLimit(parseExtensions(ehlo("h", "SIZE lots")))).toBeUndefined();
    expect(sizeLimit(parseExtensions(ehlo("h")))).toBeUndefined();
  });
});
