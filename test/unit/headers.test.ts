import { describe, expect, test } from "bun:test";
import { splitFields } from "../../src/mail/headers.ts";

const split = (text: string) =>
  splitFields(Buffer.from(text, "latin1")).map((f) => [f.key, f.line.toString("latin1")]);

describe("splitFields (the fields as mailauth reads them)", () => {
  test.each([
    [
      "one field per line",
      "From: a@b\r\nTo: c@d\r\n",
      [
        ["from", "From: a@b"],
        ["to", "To: c@d"],
      ],
    ],
    [
      "a fold stays with its field",
      "Subject: a\r\n b\r\nTo: c\r\n",
      [
        ["subject", "Subject: a\r\n b"],
        ["to", "To: c"],
      ],
    ],
    [
      "a name folded before its colon is still that name",
      "From\r\n : x@evil\r\n",
      [["from", "From\r\n : x@evil"]],
    ],
    ["whitespace before the colon (obsolete syntax)", "From \t: a@b\r\n", [["from", "From \t: a@b"]]],
    [
      "a line that opens no field belongs to the one above",
      "From: a@b\r\nnot a field\r\nTo: c\r\n",
      [
        ["from", "From: a@b\r\nnot a field"],
        ["to", "To: c"],
      ],
    ],
    [
      "bare LF line ends",
      "From: a@b\nTo: c\n",
      [
        ["from", "From: a@b"],
        ["to", "To: c"],
      ],
    ],
    ["names are lower-cased", "DKIM-Signature: v=1\r\n", [["dkim-signature", "DKIM-Signature: v=1"]]],
    ["nothing", "", []],
  ])("%s", (_name, text, expected) => {
    expect(split(text)).toEqual(expected);
  });
});
