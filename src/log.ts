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

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (l) => process.stdout.write(l),
): Logger {
  const emit = (lvl: LogLevel) => (msg: string, fields?: Fields) => {
    if (RANK[lvl] < RANK[level]) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields })}\n`);
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
