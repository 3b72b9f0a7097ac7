// The logger's stdout, written a turn of the event loop at a time, in a real Bun process: no line
// is lost or reordered, also when the process exits right after logging.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const LOG = join(import.meta.dir, "../../src/log.ts");

/** Runs `body` in a new Bun process with `log` an info logger on stdout; its exit code and stdout. */
async function logging(body: string): Promise<{ code: number; lines: { msg: string; n?: number }[] }> {
  const script = `
    import { createLogger } from ${JSON.stringify(LOG)};
    const log = createLogger("info");
    ${body}
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return {
    code,
    lines: out
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l)),
  };
}

describe("log lines on stdout", () => {
  test("lines logged just before process.exit() are all written, in order", async () => {
    const r = await logging(`
      for (let n = 0; n < 3; n++) log.info("line", { n });
      process.exit(7);
    `);
    expect(r.code).toBe(7);
    expect(r.lines.map((l) => l.n)).toEqual([0, 1, 2]);
  });

  test("more than one flush's worth in one turn, then more on later turns, arrive whole and in order", async () => {
    const r = await logging(`
      for (let n = 0; n < 5000; n++) log.info("a line long enough to fill the buffer several times", { n });
      setTimeout(() => log.info("later", { n: 5000 }), 20);
    `);
    expect(r.code).toBe(0);
    expect(r.lines).toHaveLength(5001);
    expect(r.lines.map((l) => l.n)).toEqual(Array.from({ length: 5001 }, (_, n) => n));
    expect(r.lines.at(-1)!.msg).toBe("later");
  });

  test("flushLog() writes the pending lines before a fatal line on stderr", async () => {
    const script = `
      import { createLogger, flushLog } from ${JSON.stringify(LOG)};
      createLogger("info").info("what led to it");
      flushLog();
      process.stderr.write("postern: fatal\\n");
      process.exit(1);
    `;
    // one pipe for both, as journald or docker logs would have them
    const proc = Bun.spawn(["sh", "-c", '"$0" -e "$1" 2>&1', process.execPath, script], { stdout: "pipe" });
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    expect(code).toBe(1);
    const lines = out.split("\n").filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!).msg).toBe("what led to it");
    expect(lines[1]).toBe("postern: fatal");
  });

  test("a line is written within a turn of the event loop, not held for more", async () => {
    const r = await logging(`
      log.info("first", { n: 0 });
      // if the first line were still held, a SIGKILL now would lose it
      setTimeout(() => process.kill(process.pid, "SIGKILL"), 50);
    `);
    expect(r.code).not.toBe(0);
    expect(r.lines.map((l) => l.msg)).toEqual(["first"]);
  });
});
