import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import PostalMime, { type Email } from "postal-mime";
import { ComposeError, type ComposeInput, composeMessage } from "../../src/mail/compose.ts";

const DATE = new Date(Date.UTC(2026, 10, 29, 8, 23, 1));
const latin1 = (b: Uint8Array) => Buffer.from(b).toString("latin1");

function input(patch: Partial<ComposeInput> = {}): ComposeInput {
  return {
    from: "Alice <alice@example.test>",
    to: ["bob@example.org"],
    subject: "Quarterly report",
    text: "Hello Bob,\n\nthe numbers.\n",
    messageIdDomain: "example.test",
    date: DATE,
    ...patch,
  };
}

/** postal-mime reads text parts line by line and may keep the line end before a boundary. */
const body = (s: string | undefined) => s?.replace(/\n+$/, "");
const header = (email: Email, name: string) => email.headers.find((h) => h.key === name)?.value;
/** The top-level header block, raw. */
const head = (raw: Uint8Array) => latin1(raw).split("\r\n\r\n")[0]!;

function expectWireSafe(raw: Uint8Array) {
  const text = latin1(raw);
  expect(/\r(?!\n)|(?<!\r)\n/.test(text)).toBe(false);
  for (const line of text.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);
}

/** Asserts the promise rejects with a ComposeError naming `field`. */
async function expectRefused(patch: Partial<ComposeInput>, field: string) {
  let error: unknown;
  try {
    await composeMessage(input(patch));
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ComposeError);
  expect((error as ComposeError).field).toBe(field);
  const message = (error as ComposeError).message;
  expect(message.includes(field) || message.includes(JSON.stringify(field))).toBe(true);
}

describe("composeMessage", () => {
  test("a text message: the fields, Date, Message-ID, MIME-Version, CRLF", async () => {
    const raw = await composeMessage(input({ cc: ["Carol <carol@example.org>"] }));
    expectWireSafe(raw);
    const email = await PostalMime.parse(raw);
    expect(email.from).toEqual({ name: "Alice", address: "alice@example.test" });
    expect(email.to).toEqual([{ name: "", address: "bob@example.org" }]);
    expect(email.cc).toEqual([{ name: "Carol", address: "carol@example.org" }]);
    expect(email.subject).toBe("Quarterly report");
    expect(email.text).toBe("Hello Bob,\n\nthe numbers.\n");
    expect(email.html).toBeUndefined();
    expect(new Date(email.date!).getTime()).toBe(DATE.getTime());
    expect(email.messageId).toMatch(/^<[a-z0-9]+\.[0-9a-f]{16}@example\.test>$/);
    expect(header(email, "mime-version")).toBe("1.0");
    expect(header(email, "content-type")).toMatch(/^text\/plain/);
    expect(email.attachments).toEqual([]);
    // Every header field once.
    const names = email.headers.map((h) => h.key);
    expect(new Set(names).size).toBe(names.length);
  });

  test("two messages never share a Message-ID", async () => {
    const a = await PostalMime.parse(await composeMessage(input()));
    const b = await PostalMime.parse(await composeMessage(input()));
    expect(a.messageId).not.toBe(b.messageId);
  });

  test("text and html: multipart/alternative", async () => {
    const raw = await composeMessage(input({ html: "<p>Hello <b>Bob</b></p>" }));
    expectWireSafe(raw);
    const email = await PostalMime.parse(raw);
    expect(header(email, "content-type")).toMatch(/^multipart\/alternative;/);
    expect(body(email.text)).toBe("Hello Bob,\n\nthe numbers.");
    expect(body(email.html)).toBe("<p>Hello <b>Bob</b></p>");
  });

  test("html alone: a text/html message", async () => {
    const email = await PostalMime.parse(await composeMessage(input({ text: undefined, html: "<p>hi</p>" })));
    expect(header(email, "content-type")).toMatch(/^text\/html/);
    expect(body(email.html)).toBe("<p>hi</p>");
  });

  test("attachments: multipart/mixed, byte-exact, in base64", async () => {
    const binary = randomBytes(5000);
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const raw = await composeMessage(
      input({
        html: "<p>see attached</p>",
        attachments: [
          {
            filename: "data.bin",
            contentType: "application/octet-stream",
            content: binary.toString("base64"),
          },
          { filename: "Übersicht 2026.pdf", content: all.toString("base64") },
          { filename: "empty.txt", contentType: "text/plain", content: "" },
        ],
      }),
    );
    expectWireSafe(raw);
    expect(latin1(raw)).toMatch(/Content-Transfer-Encoding: base64/);
    const email = await PostalMime.parse(raw);
    expect(header(email, "content-type")).toMatch(/^multipart\/mixed;/);
    expect(body(email.text)).toBe("Hello Bob,\n\nthe numbers.");
    expect(body(email.html)).toBe("<p>see attached</p>");
    expect(email.attachments.map((a) => [a.filename, a.mimeType, a.disposition])).toEqual([
      ["data.bin", "application/octet-stream", "attachment"],
      ["Übersicht 2026.pdf", "application/pdf", "attachment"],
      ["empty.txt", "text/plain", "attachment"],
    ]);
    expect(Buffer.from(email.attachments[0]!.content as ArrayBuffer).equals(binary)).toBe(true);
    expect(Buffer.from(email.attachments[1]!.content as ArrayBuffer).equals(all)).toBe(true);
    expect((email.attachments[2]!.content as ArrayBuffer).byteLength).toBe(0);
  });

  test("base64 with line breaks in it is accepted; anything else is refused", async () => {
    const bytes = randomBytes(300);
    const wrapped = bytes.toString("base64").replace(/.{60}/g, "$&\r\n");
    const email = await PostalMime.parse(
      await composeMessage(input({ attachments: [{ filename: "a.bin", content: wrapped }] })),
    );
    expect(Buffer.from(email.attachments[0]!.content as ArrayBuffer).equals(bytes)).toBe(true);
    await expectRefused(
      { attachments: [{ filename: "a.bin", content: "not base64!" }] },
      "attachments[0].content",
    );
    await expectRefused(
      { attachments: [{ filename: "a.bin", content: "QUJDRA=x" }] },
      "attachments[0].content",
    );
  });

  test("a non-ASCII subject and display names: RFC 2047 encoded-words, round-tripped", async () => {
    const subject = `Grüße aus Köln — 東京の会議 📅 ${"und noch viel mehr Text ".repeat(6)}`;
    const raw = await composeMessage(
      input({ from: "Jöhn Døe <john@example.test>", to: ["Zoë Ñúñez <zoe@example.org>"], subject }),
    );
    expectWireSafe(raw);
    // The header block itself stays ASCII.
    expect(Buffer.from(head(raw), "latin1").every((b) => b < 0x80)).toBe(true);
    expect(head(raw)).toMatch(/^Subject: =\?UTF-8\?[QB]\?/m);
    const email = await PostalMime.parse(raw);
    expect(email.subject).toBe(subject);
    expect(email.from).toEqual({ name: "Jöhn Døe", address: "john@example.test" });
    expect(email.to).toEqual([{ name: "Zoë Ñúñez", address: "zoe@example.org" }]);
  });

  test("non-ASCII text goes quoted-printable or base64: the message is 7-bit", async () => {
    const text = "Grüße,\n\nça coûte 5 € — ☃\n";
    const raw = await composeMessage(input({ text, html: "<p>ça coûte 5 €</p>" }));
    expect(raw.every((b) => b < 0x80)).toBe(true);
    expect(latin1(raw)).toMatch(/Content-Transfer-Encoding: (quoted-printable|base64)/);
    const email = await PostalMime.parse(raw);
    expect(body(email.text)).toBe(body(text));
    expect(body(email.html)).toBe("<p>ça coûte 5 €</p>");
  });

  test("long lines and lone CR or LF: CRLF only, no line over 998 octets", async () => {
    const text = `one\rtwo\nthree\r\n${"w".repeat(3000)}\n${"word ".repeat(700)}\n`;
    const raw = await composeMessage(input({ text, html: `<p>${"h".repeat(5000)}</p>` }));
    expectWireSafe(raw);
    const email = await PostalMime.parse(raw);
    expect(body(email.text)).toBe(`one\ntwo\nthree\n${"w".repeat(3000)}\n${"word ".repeat(700)}`);
    expect(body(email.html)).toBe(`<p>${"h".repeat(5000)}</p>`);
  });

  test("custom headers are added after the standard ones; non-ASCII values encoded", async () => {
    const raw = await composeMessage(
      input({
        headers: { "X-Campaign": "autumn-2026", "Reply-To": "help@example.test", "X-Note": "für dich" },
      }),
    );
    expectWireSafe(raw);
    const email = await PostalMime.parse(raw);
    expect(header(email, "x-campaign")).toBe("autumn-2026");
    expect(email.replyTo).toEqual([{ name: "", address: "help@example.test" }]);
    expect(header(email, "x-note")).toMatch(/^=\?UTF-8\?[QB]\?/);
    const keys = email.headers.map((h) => h.key);
    expect(keys.indexOf("x-campaign")).toBeGreaterThan(keys.indexOf("from"));
  });

  describe("header injection is refused, naming the field", () => {
    test.each([
      ["a CRLF in a custom value", { "X-Tag": "a\r\nBcc: eve@evil.test" }, "X-Tag"],
      ["a bare LF in a custom value", { "X-Tag": "a\nBcc: eve@evil.test" }, "X-Tag"],
      ["a bare CR in a custom value", { "X-Tag": "a\rb" }, "X-Tag"],
      ["a CRLF in a name", { "X-Tag\r\nBcc": "eve@evil.test" }, "X-Tag\r\nBcc"],
      ["a colon in a name", { "X-Tag: y\r\nBcc": "v" }, "X-Tag: y\r\nBcc"],
      ["a space in a name", { "X Tag": "v" }, "X Tag"],
      ["an empty name", { "": "v" }, ""],
    ])("%s", async (_what, headers, field) => {
      await expectRefused({ headers }, field);
    });

    test.each([
      "From",
      "to",
      "CC",
      "Bcc",
      "Date",
      "Message-ID",
      "message-id",
      "MIME-Version",
      "Subject",
      "Content-Type",
      "content-transfer-encoding",
      "Content-Disposition",
    ])("%s may not be set as a custom header", async (name) => {
      await expectRefused({ headers: { [name]: "x" } }, name);
    });

    test.each<[string, Partial<ComposeInput>, string]>([
      ["subject", { subject: "hi\r\nBcc: eve@evil.test" }, "subject"],
      ["from", { from: "a@example.test\nBcc: eve@evil.test" }, "from"],
      ["to", { to: ["ok@example.org", "b@example.org\r\nX-Evil: 1"] }, "to[1]"],
      ["cc", { cc: ["c@example.org\rX"] }, "cc[0]"],
      ["filename", { attachments: [{ filename: "a\r\n.txt", content: "" }] }, "attachments[0].filename"],
      [
        "content type",
        { attachments: [{ filename: "a.txt", contentType: "text/plain\r\nX-Evil: 1", content: "" }] },
        "attachments[0].contentType",
      ],
    ])("a line break in %s", async (_what, patch, field) => {
      await expectRefused(patch, field);
    });
  });

  test("a word too long for any line is refused rather than sent over 998 octets", async () => {
    await expectRefused({ subject: "s".repeat(1200) }, "Subject");
    await expectRefused({ headers: { "X-Token": "t".repeat(1200) } }, "X-Token");
  });
});
