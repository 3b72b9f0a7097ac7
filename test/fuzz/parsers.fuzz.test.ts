// Fuzz targets for the parsers that read what peers send: they must never throw anything but
// their own declared errors, and what can be written and read back must come back the same.
import { describe, expect, test } from "bun:test";
import packet from "dns-packet";
import { interpret, matchResponse } from "../../src/dns/message.ts";
import { ReplyParser, ReplySyntaxError } from "../../src/smtp/client-replies.ts";
import { parseCommand } from "../../src/smtp/command.ts";
import { MessageDecoder } from "../../src/smtp/data.ts";
import { encodeDataAll } from "../../src/smtp/dotstuff.ts";
import { bytes, fuzz, mutate, type Rng, text } from "./lib.ts";

const CR = 13;
const LF = 10;
const DOT = 46;
/** Bytes that matter to line-based protocols. */
const SPECIAL = [CR, LF, DOT, 0, 32, 9, 58, 60, 62, 61, 64, 0x7f, 0xc3, 0xff];

const COMMANDS = [
  "EHLO client.example",
  "HELO x",
  "MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb",
  "RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d.example",
  "MAIL FROM:<>",
  "RCPT TO:<@relay.example:c@d.example>",
  "DATA",
  "BDAT 100 LAST",
  "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
  "STARTTLS",
  "RSET",
  "QUIT",
  "VRFY x",
];

/** A message with CRLF lines, some starting with dots, as a client would hand it to DATA. */
function message(rng: Rng): Uint8Array {
  const lines: string[] = [];
  for (let i = rng.int(12); i >= 0; i--) {
    const dots = ".".repeat(rng.int(3));
    lines.push(
      dots +
        text(
          rng.bytes(
            rng.int(60),
            [...Array(95).keys()].map((k) => k + 32),
          ),
        ),
    );
  }
  return bytes(`${lines.join("\r\n")}\r\n`);
}

function pushSplit(decoder: MessageDecoder, input: Uint8Array, rng: Rng): number {
  let offset = 0;
  while (offset < input.length) {
    const n = 1 + rng.int(Math.min(64, input.length - offset));
    const end = decoder.push(input.subarray(offset, offset + n));
    if (end >= 0) return offset + end;
    offset += n;
  }
  return -1;
}

describe("fuzz", () => {
  test("the command parser answers every line with a command or a reply, never a throw", () => {
    const runs = fuzz("parseCommand", (rng) => {
      const seedLine = bytes(rng.pick(COMMANDS));
      const line = text(rng.int(4) === 0 ? rng.bytes(rng.int(600)) : mutate(rng, seedLine, SPECIAL));
      const parsed = parseCommand(line);
      if (parsed.ok) expect(typeof parsed.command.verb).toBe("string");
      else expect(parsed.reply.code).toBeGreaterThanOrEqual(500);
    });
    expect(runs).toBeGreaterThan(0);
  });

  test("DATA decoding: dot-stuffed by our client, decoded back byte for byte, however the stream is split", () => {
    fuzz("MessageDecoder round trip", (rng) => {
      const original = message(rng);
      const wire = encodeDataAll(original);
      const decoder = new MessageDecoder(1 << 20, true);
      const end = pushSplit(decoder, wire, rng);
      expect(end).toBe(wire.length);
      const result = decoder.result();
      expect(result.bareLf || result.bareCr || result.tooBig).toBe(false);
      expect(text(Buffer.concat(result.chunks))).toBe(text(original));
    });
  });

  test("DATA and BDAT decoding of any bytes: the same verdict whole or split, never a throw", () => {
    fuzz("MessageDecoder split", (rng) => {
      const input =
        rng.int(3) === 0
          ? rng.bytes(rng.int(400), SPECIAL)
          : mutate(rng, encodeDataAll(message(rng)), SPECIAL);
      for (const dotStuffed of [true, false]) {
        const whole = new MessageDecoder(300, dotStuffed);
        const wholeEnd = whole.push(input);
        const split = new MessageDecoder(300, dotStuffed);
        const splitEnd = pushSplit(split, input, rng);
        expect(splitEnd).toBe(wholeEnd);
        const a = whole.result();
        const b = split.result();
        expect({ ...b, chunks: text(Buffer.concat(b.chunks)) }).toEqual({
          ...a,
          chunks: text(Buffer.concat(a.chunks)),
        });
        if (!dotStuffed) expect(wholeEnd).toBe(-1);
      }
    });
  });

  test("the reply parser: well-formed replies come back as sent, anything else is a ReplySyntaxError", () => {
    fuzz("ReplyParser", (rng) => {
      const code = 200 + rng.int(400);
      const lines = Array.from({ length: 1 + rng.int(4) }, () =>
        text(
          rng.bytes(
            rng.int(40),
            [...Array(95).keys()].map((k) => k + 32),
          ),
        ).trim(),
      );
      const wire = bytes(
        lines.map((l, i) => `${code}${i === lines.length - 1 ? " " : "-"}${l}\r\n`).join(""),
      );
      const input = rng.int(2) === 0 ? wire : mutate(rng, wire, SPECIAL);
      const parser = new ReplyParser();
      try {
        let offset = 0;
        const got = [];
        while (offset < input.length) {
          const n = 1 + rng.int(input.length - offset);
          got.push(...parser.push(input.subarray(offset, offset + n)));
          offset += n;
        }
        if (input === wire) {
          expect(got).toHaveLength(1);
          expect(got[0]!.code).toBe(code);
        }
      } catch (err) {
        if (!(err instanceof ReplySyntaxError)) throw err;
        expect(input).not.toBe(wire);
      }
    });
  });

  test("the DNS reader: any datagram is matched or ignored, and a match is interpreted, never a throw", () => {
    const answer = packet.encode({
      type: "response",
      id: 7,
      flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE,
      questions: [{ type: "MX", name: "example.test", class: "IN" }],
      answers: [
        { type: "MX", name: "example.test", ttl: 60, data: { preference: 10, exchange: "mx.example.test" } },
      ],
    });
    fuzz("DNS response", (rng) => {
      const datagram = Buffer.from(rng.int(3) === 0 ? answer : mutate(rng, answer));
      const response = matchResponse(datagram, 7, "example.test", "MX");
      if (response)
        expect(["records", "negative", "follow", "failure"]).toContain(
          interpret(response, "example.test", "MX").kind,
        );
    });
  });
});
