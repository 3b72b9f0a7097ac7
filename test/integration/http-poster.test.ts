// The event webhooks' HTTP client against a server that is not ours (Python's http.server):
// connections kept and reused, and every way a reply can end the use of one (Connection: close,
// a chunked body, a server that closes a kept connection, a reply that never comes).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { HttpPostError, HttpPoster } from "../../src/net/http-poster.ts";
import { tempDir } from "../helpers/cli.ts";
import { freePort, waitListening } from "../helpers/serve.ts";
import { makeTestCa } from "../helpers/test-ca.ts";

interface Logged {
  port: number;
  path: string;
  headers: Record<string, string>;
  body: string;
}

describe("HttpPoster", () => {
  let proc: Bun.Subprocess;
  let port: number;
  let logFile: string;
  const poster = new HttpPoster();
  const url = (path: string) => new URL(`http://127.0.0.1:${port}${path}`);
  const logged = (): Logged[] =>
    existsSync(logFile)
      ? readFileSync(logFile, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Logged)
      : [];
  const post = (path: string, body = "{}", timeoutMs = 5000) =>
    poster.post(url(path), { "Content-Type": "application/json", "Webhook-Id": "evt_1" }, body, timeoutMs);

  beforeAll(async () => {
    port = await freePort();
    logFile = join(tempDir(), "posts.jsonl");
    proc = Bun.spawn(
      ["/usr/bin/python3", join(import.meta.dir, "../helpers/http_receiver.py"), String(port), logFile],
      {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "inherit",
      },
    );
    await waitListening(port, proc, "http_receiver.py");
  });
  afterAll(async () => {
    poster.close();
    proc.kill();
    await proc.exited;
  });

  test("POSTs the body and fields as given, and reuses the connection for the next POSTs", async () => {
    const body = JSON.stringify({ id: "evt_1", text: "héllo" });
    for (let i = 0; i < 3; i++)
      expect(await post(`/ok?n=${i}`, body)).toEqual({ status: 200, reason: "OK", location: undefined });
    const [first, ...rest] = logged().slice(-3);
    expect(first).toMatchObject({ path: "/ok?n=0", body });
    expect(first!.headers).toMatchObject({
      Host: `127.0.0.1:${port}`,
      "Content-Type": "application/json",
      "Webhook-Id": "evt_1",
      "Content-Length": String(Buffer.byteLength(body)),
    });
    expect(rest.map((r) => r.port)).toEqual([first!.port, first!.port]);
  });

  test("side by side, each POST has its own connection, and they are all kept", async () => {
    const before = logged().length;
    await Promise.all(Array.from({ length: 5 }, (_, i) => post(`/ok?wide=${i}`)));
    await Promise.all(Array.from({ length: 5 }, (_, i) => post(`/ok?again=${i}`)));
    const wide = logged().slice(before);
    const ports = (prefix: string) =>
      new Set(wide.filter((r) => r.path.startsWith(prefix)).map((r) => r.port));
    expect(ports("/ok?wide").size).toBe(5);
    expect(ports("/ok?again")).toEqual(ports("/ok?wide"));
  });

  test("Connection: close and a chunked body end the connection's use; the status is read all the same", async () => {
    expect((await post("/close")).status).toBe(202);
    expect((await post("/ok?after=close")).status).toBe(200);
    expect((await post("/chunked")).status).toBe(200);
    expect((await post("/ok?after=chunked")).status).toBe(200);
    const [close, afterClose, chunked, afterChunked] = logged().slice(-4);
    expect(afterClose!.port).not.toBe(close!.port);
    expect(afterChunked!.port).not.toBe(chunked!.port);
  });

  test("a kept connection the server closed is given up, and the POST goes on a new one", async () => {
    expect((await post("/drop-after")).status).toBe(200);
    await Bun.sleep(500); // the server has closed it by now
    expect((await post("/ok?after=drop")).status).toBe(200);
    const [dropped, next] = logged().slice(-2);
    expect(next!.path).toBe("/ok?after=drop");
    expect(next!.port).not.toBe(dropped!.port);
  });

  test("interim 100 is skipped; a redirect's Location is reported; 500 is a reply", async () => {
    expect((await post("/continue")).status).toBe(201);
    expect(await post("/redirect")).toEqual({
      status: 302,
      reason: "Found",
      location: "http://10.0.0.1/elsewhere",
    });
    expect(await post("/fail")).toMatchObject({ status: 500, reason: "Internal Server Error" });
    expect((await post("/ok?after=fail")).status).toBe(200);
  });

  test("no reply within the timeout: HttpPostError, timedOut", async () => {
    const started = Date.now();
    const err = await post("/hang", "{}", 300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpPostError);
    expect((err as HttpPostError).timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test("a head over 16 KiB, a refused connection and a line break in a field are errors that say so", async () => {
    await expect(post("/huge-head")).rejects.toThrow(/response head over 16384 bytes/);
    const closed = await freePort();
    await expect(poster.post(new URL(`http://127.0.0.1:${closed}/`), {}, "{}", 2000)).rejects.toThrow(
      new RegExp(`connecting to 127\\.0\\.0\\.1:${closed}`),
    );
    await expect(poster.post(url("/ok"), { "Webhook-Id": "a\r\nX-Injected: 1" }, "{}", 2000)).rejects.toThrow(
      "header Webhook-Id holds a line break",
    );
    expect(logged().some((r) => "X-Injected" in r.headers)).toBe(false);
  });
});

describe("HttpPoster over https", () => {
  const ca = makeTestCa();
  const material = ca.issue(["127.0.0.1"]);
  let server: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { key: material.key, cert: material.cert },
      fetch: () => new Response("ok"),
    });
  });
  afterAll(() => server.stop(true));

  test("trusts a certificate only from the system's roots and the extra ones given", async () => {
    const target = new URL(`https://127.0.0.1:${server.port}/hook`);
    const untrusting = new HttpPoster();
    await expect(untrusting.post(target, {}, "{}", 3000)).rejects.toThrow(
      "TLS: unable to verify the first certificate",
    );
    untrusting.close();
    const trusting = new HttpPoster({ extraRoots: [ca.pem] });
    expect((await trusting.post(target, {}, "{}", 3000)).status).toBe(200);
    expect((await trusting.post(target, {}, "{}", 3000)).status).toBe(200);
    trusting.close();
  });

  test("a certificate for another name is refused", async () => {
    const other = ca.issue(["other.test"]);
    const wrong = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { key: other.key, cert: other.cert },
      fetch: () => new Response("ok"),
    });
    const trusting = new HttpPoster({ extraRoots: [ca.pem] });
    try {
      await expect(
        trusting.post(new URL(`https://127.0.0.1:${wrong.port}/`), {}, "{}", 3000),
      ).rejects.toThrow(/TLS: Hostname\/IP does not match/);
    } finally {
      trusting.close();
      wrong.stop(true);
    }
  });
});
