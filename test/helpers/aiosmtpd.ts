// An SMTP server that is not ours: Python's aiosmtpd (Debian's python3-aiosmtpd) storing what it
// receives in a Maildir. Delivery tests that count what arrived use it, so that a misreading of
// the RFC shared by our client and our own parser cannot pass unseen.
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./cli.ts";
import { freePort, waitListening } from "./serve.ts";

const PYTHON = "/usr/bin/python3";

/** True when Debian's python3 has aiosmtpd. */
export const haveAiosmtpd =
  existsSync(PYTHON) && Bun.spawnSync([PYTHON, "-c", "import aiosmtpd"], { stderr: "ignore" }).exitCode === 0;

export interface Aiosmtpd {
  port: number;
  /** The Subject of every message received so far (one entry per message). */
  subjects(): string[];
  /** Every RCPT address asked about so far, in order (only with `refuseUnknown`). */
  rcpts(): string[];
  /** Stops it (by its PID) and waits until it is gone. */
  stop(): Promise<void>;
}

/** Starts aiosmtpd on 127.0.0.1:`port` (a free one by default); resolves once it accepts connections. */
export async function startAiosmtpd(
  port?: number,
  options: {
    maildir?: string;
    /** Refuse recipients whose local part starts with "unknown" (550 5.1.1), as an inner store does. */
    refuseUnknown?: boolean;
  } = {},
): Promise<Aiosmtpd> {
  const maildir = options.maildir ?? tempDir("postern-aiosmtpd-");
  const handler = options.refuseUnknown ? "aiosmtpd_handlers.RefusingMailbox" : "aiosmtpd.handlers.Mailbox";
  const p = port ?? (await freePort());
  // Python's Maildir makes these only for a folder that does not exist yet
  for (const sub of ["tmp", "new", "cur"]) mkdirSync(join(maildir, sub), { recursive: true });
  const proc = Bun.spawn([PYTHON, "-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${p}`, "-c", handler, maildir], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, PYTHONPATH: import.meta.dir },
  });
  await waitListening(p, proc, "aiosmtpd").catch(async (err) => {
    throw new Error(`${(err as Error).message}: ${await new Response(proc.stderr).text()}`);
  });
  return {
    port: p,
    subjects() {
      const dir = join(maildir, "new");
      if (!existsSync(dir)) return [];
      return readdirSync(dir).map((f) => {
        const m = /^Subject: (.*)$/im.exec(readFileSync(join(dir, f), "latin1"));
        return m ? m[1]!.trim() : "";
      });
    },
    rcpts() {
      const file = join(maildir, "rcpts.log");
      return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
    },
    async stop() {
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await proc.exited;
      clearTimeout(killer);
    },
  };
}
