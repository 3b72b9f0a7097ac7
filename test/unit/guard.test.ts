// The process guard of `serve`, in a real Bun process: what it lets the process live through and
// what it does not.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const GUARD = join(import.meta.dir, "../../src/guard.ts");

/** Runs `body` in a new Bun process with the guard installed; its exit code and output. */
async function guarded(body: string): Promise<{ code: number; out: string }> {
  const script = `
    import { guardProcess } from ${JSON.stringify(GUARD)};
    import { createLogger } from ${JSON.stringify(join(import.meta.dir, "../../src/log.ts"))};
    guardProcess(createLogger("info"));
    ${body}
    setTimeout(() => { console.log("still alive"); process.exit(0); }, 200);
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out: out + err };
}

describe("the process guard", () => {
  test("postgres.js's write on a closed socket (from a setImmediate) is logged and the process lives", async () => {
    const r = await guarded(`
      let socket = null;
      function nextWrite() { return socket.write("x"); }
      setImmediate(nextWrite);
    `);
    expect(r.out).toContain("a database connection closed under a pending write");
    expect(r.out).toContain("still alive");
    expect(r.code).toBe(0);
  });

  test("an unhandled rejection is logged as a bug and the process lives", async () => {
    const r = await guarded(`void Promise.reject(new Error("nobody awaited me"));`);
    expect(r.out).toContain("unhandled rejection");
    expect(r.out).toContain("nobody awaited me");
    expect(r.code).toBe(0);
  });

  test("any other uncaught exception is logged and ends the process with status 1", async () => {
    const r = await guarded(`setImmediate(() => { throw new TypeError("something else"); });`);
    expect(r.out).toContain("uncaught exception: exiting");
    expect(r.out).not.toContain("still alive");
    expect(r.code).toBe(1);
  });
});
