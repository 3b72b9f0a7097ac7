// The head of an HTTP/1.1 response and how its body is framed: what decides whether the webhook
// client may reuse the connection.
import { describe, expect, test } from "bun:test";
import { bodyFraming, HttpResponseError, parseResponseHead } from "../../src/net/http-response.ts";

const head = (text: string) => parseResponseHead(Buffer.from(text, "latin1"));

describe("parseResponseHead", () => {
  test("waits for the blank line, then reads status, reason, fields and size", () => {
    expect(head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")).toBeUndefined();
    const h = head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:  spaced \r\n\r\nok");
    expect(h).toMatchObject({ status: 200, reason: "OK", size: 53, keepAlive: true });
    expect([...h!.fields]).toEqual([
      ["content-length", "2"],
      ["x-a", "spaced"],
    ]);
  });

  test("keep-alive: HTTP/1.1 unless Connection: close; HTTP/1.0 only with Connection: keep-alive", () => {
    expect(head("HTTP/1.1 204 No Content\r\nConnection: Close\r\n\r\n")!.keepAlive).toBe(false);
    expect(head("HTTP/1.0 200 OK\r\n\r\n")!.keepAlive).toBe(false);
    expect(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n")!.keepAlive).toBe(true);
    expect(head("HTTP/1.1 200\r\n\r\n")).toMatchObject({ status: 200, reason: "", keepAlive: true });
  });

  test("refuses what is not a response head, naming the line", () => {
    expect(() => head("SSH-2.0-OpenSSH_9.2\r\n\r\n")).toThrow(/not an HTTP\/1\.x status line: "SSH-2\.0/);
    expect(() => head("HTTP/2 200\r\n\r\n")).toThrow(HttpResponseError);
    expect(() => head("HTTP/1.1 200 OK\r\n folded\r\n\r\n")).toThrow(/malformed response header line/);
    expect(() => head("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n")).toThrow(/malformed response header line/);
  });

  test("a head over 16 KiB is refused, complete or not", () => {
    const filler = `X-Filler: ${"x".repeat(17 * 1024)}\r\n`;
    expect(() => head(`HTTP/1.1 200 OK\r\n${filler}`)).toThrow(/response head over 16384 bytes/);
    expect(() => head(`HTTP/1.1 200 OK\r\n${filler}\r\n`)).toThrow(/response head over 16384 bytes/);
  });
});

describe("bodyFraming", () => {
  const framing = (text: string) => bodyFraming(head(text)!);
  test.each([
    ["HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", { kind: "length", bytes: 12 }],
    ["HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", { kind: "length", bytes: 0 }],
    ["HTTP/1.1 204 No Content\r\n\r\n", { kind: "none" }],
    ["HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", { kind: "none" }],
    ["HTTP/1.1 100 Continue\r\n\r\n", { kind: "none" }],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", { kind: "unread" }],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", { kind: "unread" }],
    ["HTTP/1.1 200 OK\r\n\r\n", { kind: "unread" }],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", { kind: "unread" }],
    ["HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 2\r\n\r\n", { kind: "unread" }],
    ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", { kind: "unread" }],
  ])("%j", (text, expected) => {
    expect(framing(text)).toEqual(expected as ReturnType<typeof bodyFraming>);
  });
});
