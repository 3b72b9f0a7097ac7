// JSON lines on stdout: one object per event, with a time, a level and a message.
export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

/**
 * Lines gathered over one turn of the event loop and written together: a busy MX logs a line per
 * message, and a write per line was ~3% of its CPU (bench/RESULTS.md, issue 16). What is pending
 * is written before the process exits (process.exit() included) and before a fatal line goes to
 * stderr (flushLog); a crash, or a signal the process has no handler for, loses at most a turn.
 */
class StdoutLines {
  private pending = "";
  private scheduled = false;

  constructor() {
    process.on("exit", () => this.flush());
  }

  readonly write = (line: string): void => {
    this.pending += line;
    if (this.pending.length >= FLUSH_AT) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  };

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.pending === "") return;
    // taken first: a write that throws (stdout closed) must not leave the text to throw again
    const text = this.pending;
    this.pending = "";
    try {
      process.stdout.write(text);
    } catch {
      // nowhere left to say it
    }
  };
}

const FLUSH_AT = 64 * 1024;
let stdoutLines: StdoutLines | undefined;

function stdoutLineWriter(): (line: string) => void {
  stdoutLines ??= new StdoutLines();
  return stdoutLines.write;
}

/** Writes the log lines still pending: before a line on stderr that should follow them. */
export function flushLog(): void {
  stdoutLines?.flush();
}

/**
 * `redact` sees every line before it is written: the server passes one that hides the secrets of
 * its settings, so an error quoting a URL or a token cannot put them in the log.
 */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = stdoutLineWriter(),
  redact: (line: string) => string = (l) => l,
): Logger {
  const emit = (lvl: LogLevel) => (msg: string, fields?: Fields) => {
    if (RANK[lvl] < RANK[level]) return;
    write(`${redact(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }))}\n`);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/**
 * One line saying what went wrong. A failed query says why it failed, not the query: drizzle's
 * message carries the statement and its parameters, which can be whole messages or secrets.
 */
export function errorMessage(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const text =
    err instanceof Error && err.message.startsWith("Failed query") && cause instanceof Error
      ? cause.message
      : err instanceof Error
        ? err.message
        : String(err);
  return text.split("\n")[0]!.slice(0, 300);
}

/**
 * One line for an operator: the first line of the message, and of its cause when there is one
 * (a failed query says which query; its cause says why: "connect ECONNREFUSED 10.0.0.5:5432").
 */
export function oneLineError(err: unknown): string {
  const first = (e: unknown) => errorMessage(e).split("\n")[0]!.trim();
  const cause = err instanceof Error && err.cause !== undefined ? first(err.cause) : "";
  return cause && !first(err).includes(cause) ? `${first(err)}: ${cause}` : first(err);
}
