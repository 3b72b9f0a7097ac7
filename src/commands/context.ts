// What a CLI verb runs with. The same verbs run in the CLI process or, while `serve` holds the
// embedded database, inside the server on behalf of a control-socket client: so they write
// through `out`/`err` and read `stdin` from here, never from the process.
import { parseArgs } from "node:util";
import type { Config } from "../config.ts";
import type { Db } from "../db/open.ts";

export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
  /** Standard input as text; the CLI reads it only for verbs that take it. */
  stdin(): Promise<string>;
}

export interface CommandContext {
  db: Db;
  config: Config;
  io: CommandIO;
}

/** A failed operation: exit status 1. */
export class OperationError extends Error {}

/** A malformed command line: exit status 2. */
export class UsageError extends Error {}

export type Verb = (ctx: CommandContext, args: string[]) => Promise<void>;

export interface VerbGroup {
  usage: string;
  subverbs: Record<string, Verb>;
}

type Options = NonNullable<Parameters<typeof parseArgs>[0]>["options"];

/** parseArgs with its errors turned into one-line usage errors. */
export function parseVerbArgs<O extends Options>(args: string[], options: O, positionals: number) {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]!);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument${positionals === 1 ? "" : "s"}`);
  }
  return parsed;
}

/** The first line of standard input, for `--password-stdin`. */
export async function readSecretLine(io: CommandIO): Promise<string> {
  const line = (await io.stdin()).split(/\r?\n/)[0] ?? "";
  if (line.length === 0) throw new UsageError("--password-stdin: standard input is empty");
  return line;
}
