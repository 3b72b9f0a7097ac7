import { describe, expect, test } from "bun:test";
import { concat, MAX_LINE_OCTETS, MessageDecoder } from "../../src/smtp/data.ts";

// Messages are written as binary strings (one char = one octet), so CR, LF and dots read plainly.
const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

interface Outcome {
  content: string;
  size: number;
  tooBig: boolean;
  bareLf: boolean;
  bareCr: boolean;
  longLine: boolean;
  /** Offset in the whole stream just past the terminator, or -1. */
  end: number;
}

/** Feeds `pieces` one after the other, as a session would, stopping at the terminator. */
function decode(pieces: string[], opts: { max?: number; dotStuffed?: boolean } = {}): Outcome {
  const d = new MessageDecoder(opts.max ?? 1_000_000, opts.dotStuffed ?? true);
  let offset = 0;
  let end = -1;
  for (const piece of pieces) {
    const at = d.push(bytes(piece));
    if (at >= 0) {
      end = offset + at;
      break;
    }
    offset += piece.length;
  }
  const r = d.result();
  return {
    content: text(concat(r.chunks)),
    size: r.size,
    tooBig: r.tooBig,
    bareLf: r.bareLf,
    bareCr: r.bareCr,
    longLine: r.longLine,
    end,
  };
}

const clean = { tooBig: false, bareLf: false, bareCr: false, longLine: false };

describe("DATA: dot-stuffing and the terminator", () => {
  test.each<[string, string, string, number]>([
    ["empty message", ".\r\n", "", 3],
    ["one line", "Hello\r\n.\r\n", "Hello\r\n", 10],
    ["the CRLF before the dot is content", "a\r\nb\r\n.\r\n", "a\r\nb\r\n", 9],
    ["an empty line is content", "\r\n.\r\n", "\r\n", 5],
    ["a stuffed dot is removed", "..\r\n.\r\n", ".\r\n", 7],
    ["a stuffed dot before text", "..hidden\r\n.\r\n", ".hidden\r\n", 13],
    ["only the first dot of a line is removed", "...x\r\n.\r\n", "..x\r\n", 9],
    ["a dot inside a line is kept", "a.b\r\n.\r\n", "a.b\r\n", 8],
    ["a dot at the end of a line is kept", "a.\r\n.\r\n", "a.\r\n", 7],
    ["a dot then text on the first line", ".x\r\n.\r\n", "x\r\n", 7],
    ["a line with a dot and a space", ". \r\n.\r\n", " \r\n", 7],
    ["no CRLF at the end of the text", "abc", "abc", -1],
    ["no terminator yet", "abc\r\n", "abc\r\n", -1],
    ["a dot line not yet complete", "abc\r\n.", "abc\r\n", -1],
    ["a dot CR not yet complete", "abc\r\n.\r", "abc\r\n", -1],
  ])("%s", (_name, input, content, end) => {
    expect(decode([input])).toEqual({ ...clean, content, size: content.length, end });
  });

  test.each([
    ["one command", "QUIT\r\n"],
    ["pipelined commands", "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"],
    ["another message", "x\r\n.\r\n"],
  ])("bytes after the terminator are left to the caller (%s)", (_name, after) => {
    const input = `Subject: t\r\n\r\nbody\r\n.\r\n${after}`;
    const r = decode([input]);
    expect(r.content).toBe("Subject: t\r\n\r\nbody\r\n");
    expect(input.slice(r.end)).toBe(after);
  });

  test("the end index is relative to the piece that holds the terminator", () => {
    const d = new MessageDecoder(1000, true);
    expect(d.push(bytes("line one\r\n"))).toBe(-1);
    expect(d.push(bytes("line two\r\n.\r\nNOOP\r\n"))).toBe(13);
    expect(text(concat(d.result().chunks))).toBe("line one\r\nline two\r\n");
  });

  test("the terminator split over three pieces", () => {
    const d = new MessageDecoder(1000, true);
    expect(d.push(bytes("x\r\n"))).toBe(-1);
    expect(d.push(bytes("."))).toBe(-1);
    expect(d.push(bytes("\r"))).toBe(-1);
    expect(d.push(bytes("\nRSET\r\n"))).toBe(1);
    expect(text(concat(d.result().chunks))).toBe("x\r\n");
  });
});

describe("DATA: SMTP smuggling", () => {
  const fake = "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nspoofed\r\n";
  test.each([
    ["<LF>.<LF>", "\n.\n", { bareLf: true, bareCr: false }],
    ["<CR><LF>.<LF>", "\r\n.\n", { bareLf: true, bareCr: false }],
    ["<LF>.<CR><LF>", "\n.\r\n", { bareLf: true, bareCr: false }],
    ["<CR>.<CR>", "\r.\r", { bareLf: false, bareCr: true }],
    ["<CR>.<CR><LF>", "\r.\r\n", { bareLf: false, bareCr: true }],
    ["<CR><LF>.<CR>", "\r\n.\r", { bareLf: false, bareCr: true }],
    ["<CR><CR><LF>.<CR><CR><LF>", "\r\r\n.\r\r\n", { bareLf: false, bareCr: true }],
  ])("%s does not end the message; only <CR><LF>.<CR><LF> does", (_name, sep, flags) => {
    const input = `Subject: hi\r\n\r\nreal body${sep}${fake}.\r\nNOOP\r\n`;
    for (const pieces of [[input], [...input]]) {
      const r = decode(pieces);
      expect(r.end).toBe(input.length - "NOOP\r\n".length);
      expect(r.content).toContain("MAIL FROM:<evil@attacker.test>");
      expect(r.content.endsWith("spoofed\r\n")).toBe(true);
      expect({ bareLf: r.bareLf, bareCr: r.bareCr }).toEqual(flags);
    }
  });

  test.each([
    ["bare LF in a line", "a\nb\r\n.\r\n", { bareLf: true, bareCr: false }],
    ["bare LF as a line end", "a\n\r\n.\r\n", { bareLf: true, bareCr: false }],
    ["bare LF at the start", "\nabc\r\n.\r\n", { bareLf: true, bareCr: false }],
    ["bare CR in a line", "a\rb\r\n.\r\n", { bareLf: false, bareCr: true }],
    ["CR CR LF", "a\r\r\n.\r\n", { bareLf: false, bareCr: true }],
    ["LF CR", "a\n\rb\r\n.\r\n", { bareLf: true, bareCr: true }],
    ["dot CR x", ".\rx\r\n.\r\n", { bareLf: false, bareCr: true }],
  ])("%s is flagged", (_name, input, flags) => {
    const r = decode([input]);
    expect(r.end).toBe(input.length);
    expect({ bareLf: r.bareLf, bareCr: r.bareCr }).toEqual(flags);
  });

  test("a dot, a bare CR and text: the CR stays in the content", () => {
    expect(decode([".\rx\r\n.\r\n"]).content).toBe("\rx\r\n");
    expect(decode([".", "\r", "x\r\n.\r\n"]).content).toBe("\rx\r\n");
  });
});

describe("long lines", () => {
  const line = (n: number) => "x".repeat(n);
  test.each([
    [MAX_LINE_OCTETS - 1, false],
    [MAX_LINE_OCTETS, false],
    [MAX_LINE_OCTETS + 1, true],
    [5000, true],
  ])("a %d-octet line: longLine is %p", (n, long) => {
    const r = decode([`short\r\n${line(n)}\r\nshort\r\n.\r\n`]);
    expect(r.longLine).toBe(long);
    expect(r.content).toBe(`short\r\n${line(n)}\r\nshort\r\n`);
  });

  test("a stuffed dot does not count towards the line", () => {
    expect(decode([`.${line(MAX_LINE_OCTETS)}\r\n.\r\n`]).longLine).toBe(false);
    expect(decode([`..${line(MAX_LINE_OCTETS)}\r\n.\r\n`]).longLine).toBe(true);
  });

  test("the count starts again after each CRLF", () => {
    const r = decode([`${line(900)}\r\n${line(900)}\r\n${line(900)}\r\n.\r\n`]);
    expect(r.longLine).toBe(false);
  });

  test("a bare CR does not end a line", () => {
    expect(decode([`${line(500)}\r${line(500)}\r\n.\r\n`]).longLine).toBe(true);
  });

  test("a bare LF does not end a line", () => {
    expect(decode([`${line(500)}\n${line(500)}\r\n.\r\n`]).longLine).toBe(true);
  });

  test("in BDAT too", () => {
    expect(decode([`${line(999)}\r\n`], { dotStuffed: false }).longLine).toBe(true);
    expect(decode([`${line(998)}\r\n`], { dotStuffed: false }).longLine).toBe(false);
  });
});

describe("size cap", () => {
  test.each([
    ["under the cap", 10, "0123456789\r\n.\r\n", false],
    ["exactly at the cap", 12, "0123456789\r\n.\r\n", false],
    ["one over the cap", 11, "0123456789\r\n.\r\n", true],
    ["far over the cap", 3, "0123456789\r\n".repeat(50).concat(".\r\n"), true],
  ])("%s", (_name, max, input, tooBig) => {
    for (const pieces of [[input], [...input]]) {
      const r = decode(pieces, { max: tooBig ? max : 1000 });
      expect(r.tooBig).toBe(tooBig);
      expect(r.end).toBe(input.length);
      if (tooBig) {
        expect(r.content).toBe(""); // nothing kept past the cap
        expect(r.size).toBeGreaterThan(max);
      }
    }
  });

  test("the size counts the unstuffed content", () => {
    const r = decode(["..\r\n..\r\n.\r\n"], { max: 6 });
    expect(r).toEqual({ ...clean, content: ".\r\n.\r\n", size: 6, end: 11 });
  });

  test("nothing is kept once over the cap, even from later pieces", () => {
    const d = new MessageDecoder(5, true);
    d.push(bytes("abcdefgh\r\n"));
    d.push(bytes("more\r\n"));
    expect(d.push(bytes(".\r\n"))).toBe(3);
    const r = d.result();
    expect(r.tooBig).toBe(true);
    expect(r.chunks).toEqual([]);
    expect(r.size).toBe(16);
  });

  test("in BDAT too", () => {
    const r = decode(["12345", "67890"], { max: 7, dotStuffed: false });
    expect(r.tooBig).toBe(true);
    expect(r.content).toBe("");
  });
});

describe("BDAT mode", () => {
  test.each<[string, string[], Partial<Outcome>]>([
    ["no dot handling", ["..\r\n.\r\nafter\r\n"], { content: "..\r\n.\r\nafter\r\n" }],
    ["a terminator is just content", ["a\r\n.\r\n"], { content: "a\r\n.\r\n", end: -1 }],
    ["CR at a chunk end, LF in the next", ["line one\r", "\nline two\r\n"], { bareCr: false }],
    ["CR at the very end", ["line one\r\nhalf\r"], { bareCr: true }],
    ["CR then text in the next chunk", ["a\r", "b\r\n"], { bareCr: true }],
    ["bare LF", ["a\nb\r\n"], { bareLf: true }],
    ["bare LF at a chunk start", ["a\r\n", "\nb\r\n"], { bareLf: true }],
    ["an empty chunk", ["", "abc\r\n", ""], { content: "abc\r\n" }],
  ])("%s", (_name, pieces, expected) => {
    const r = decode(pieces, { dotStuffed: false });
    expect(r.end).toBe(-1);
    expect(r).toMatchObject(expected);
    if (expected.content === undefined) expect(r.content).toBe(pieces.join(""));
  });
});

// ---------------------------------------------------------------------------------------------
// Property: splitting the same stream anywhere gives exactly the result of feeding it whole, and
// both agree with a plain line-by-line reference decoder.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomMessage(rnd: () => number): string {
  const parts: string[] = [];
  const n = Math.floor(rnd() * 40);
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.25) parts.push("\r\n");
    else if (r < 0.35) parts.push(".");
    else if (r < 0.42) parts.push("\r\n.");
    else if (r < 0.47) parts.push("\r\n..");
    else if (r < 0.52) parts.push("\r");
    else if (r < 0.57) parts.push("\n");
    else if (r < 0.6) parts.push("\r\n.\r");
    else if (r < 0.63) parts.push("\n.\n");
    else if (r < 0.66) parts.push("x".repeat(990 + Math.floor(rnd() * 20)));
    else if (r < 0.7) parts.push("\0\xff\x80");
    else parts.push("abcdefgh".slice(0, 1 + Math.floor(rnd() * 8)));
  }
  return parts.join("");
}

/** Random cut points: sometimes every octet, otherwise a few random pieces. */
function randomSplit(s: string, rnd: () => number): string[] {
  if (rnd() < 0.2) return [...s];
  const pieces: string[] = [];
  let i = 0;
  while (i < s.length) {
    const len = rnd() < 0.3 ? 1 : 1 + Math.floor(rnd() * 64);
    pieces.push(s.slice(i, i + len));
    i += len;
  }
  return pieces;
}

/** The decoder's rules, written the obvious way over the whole stream. */
function reference(stream: string, max: number, dotStuffed: boolean): Outcome {
  let content = "";
  let bareLf = false;
  let bareCr = false;
  let longLine = false;
  let end = -1;
  let pos = 0;
  for (;;) {
    const crlf = stream.indexOf("\r\n", pos);
    let line = crlf < 0 ? stream.slice(pos) : stream.slice(pos, crlf);
    if (dotStuffed && crlf >= 0 && line === ".") {
      end = crlf + 2;
      break;
    }
    if (dotStuffed && line.startsWith(".")) line = line.slice(1);
    if (line.includes("\n")) bareLf = true;
    if (line.includes("\r")) bareCr = true;
    if (line.length > MAX_LINE_OCTETS) longLine = true;
    content += crlf < 0 ? line : `${line}\r\n`;
    if (crlf < 0) break;
    pos = crlf + 2;
  }
  const tooBig = content.length > max;
  return { content: tooBig ? "" : content, size: content.length, tooBig, bareLf, bareCr, longLine, end };
}

describe("property: any split gives the same result", () => {
  test("DATA, 400 random messages with trailing commands", () => {
    const rnd = mulberry32(20260102);
    for (let i = 0; i < 400; i++) {
      const stream = `${randomMessage(rnd)}\r\n.\r\n${rnd() < 0.5 ? "QUIT\r\n" : ""}${randomMessage(rnd)}`;
      const max = rnd() < 0.2 ? Math.floor(rnd() * 200) : 1_000_000;
      const whole = decode([stream], { max });
      expect(whole).toEqual(reference(stream, max, true));
      expect(whole.end).toBeGreaterThan(0);
      for (let k = 0; k < 3; k++) {
        const pieces = randomSplit(stream, rnd);
        expect(pieces.join("")).toBe(stream);
        expect(decode(pieces, { max })).toEqual(whole);
      }
    }
  });

  test("DATA, 1-octet pieces of every message", () => {
    const rnd = mulberry32(7);
    for (let i = 0; i < 150; i++) {
      const stream = `${randomMessage(rnd)}\r\n.\r\nNOOP\r\n`;
      expect(decode([...stream])).toEqual(decode([stream]));
    }
  });

  test("BDAT, 400 random chunk streams", () => {
    const rnd = mulberry32(42);
    for (let i = 0; i < 400; i++) {
      const stream = randomMessage(rnd);
      const max = rnd() < 0.2 ? Math.floor(rnd() * 200) : 1_000_000;
      const whole = decode([stream], { max, dotStuffed: false });
      expect(whole).toEqual(reference(stream, max, false));
      for (let k = 0; k < 3; k++) {
        expect(decode(randomSplit(stream, rnd), { max, dotStuffed: false })).toEqual(whole);
      }
    }
  });
});
