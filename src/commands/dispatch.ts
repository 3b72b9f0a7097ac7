// Turns an argument vector into a verb call and its exit status. Shared by the CLI process and
// the control socket, so a verb behaves the same on both paths.
import type { Config } from "../config.ts";
import type { Db } from "../db/open.ts";
import { errorMessage } from "../log.ts";
import { type CommandIO, OperationError, UsageError, type Verb, type VerbGroup } from "./context.ts";
import { domainVerbs } from "./domain.ts";
import { hookVerbs } from "./hook.ts";
import { keyVerbs } from "./key.ts";
import { queueVerbs, send } from "./queue.ts";
import { routeVerbs } from "./route.ts";
import { shapeVerbs } from "./shape.ts";
import { suppressionVerbs } from "./suppression.ts";
import { userVerbs } from "./user.ts";

export const verbGroups: Record<string, VerbGroup> = {
  domain: domainVerbs,
  user: userVerbs,
  route: routeVerbs,
  queue: queueVerbs,
  suppression: suppressionVerbs,
  hook: hookVerbs,
  key: keyVerbs,
  shape: shapeVerbs,
};

/** Verbs without sub-verbs. */
const singleVerbs: Record<string, Verb> = { send };

/** True when the verb reads standard input, so a control-socket client must send it along. */
export function readsStdin(argv: string[]): boolean {
  return argv.includes("--password-stdin") || argv[0] === "send";
}

/** Throws UsageError unless argv names a known database verb. */
export function checkVerb(argv: string[]): void {
  const [group, sub] = argv;
  if (group !== undefined && Object.hasOwn(singleVerbs, group)) return;
  const verbs = group === undefined ? undefined : verbGroups[group];
  if (!verbs) throw new UsageError(`unknown command "${argv.join(" ")}"`);
  if (sub === undefined || !Object.hasOwn(verbs.subverbs, sub))
    throw new UsageError(`usage: postern ${verbs.usage}`);
}

export async function runVerb(argv: string[], db: Db, config: Config, io: CommandIO): Promise<number> {
  try {
    if (argv[0] === "migrate") {
      // Whoever opened the database (this CLI or the running server) has applied them already.
      io.out("migrations applied\n");
      return 0;
    }
    checkVerb(argv);
    const [group, sub, ...rest] = argv;
    const single = singleVerbs[group!];
    if (single) await single({ db, config, io }, argv.slice(1));
    else await verbGroups[group!]!.subverbs[sub!]!({ db, config, io }, rest);
    return 0;
  } catch (err) {
    io.err(`postern: ${oneLine(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function oneLine(err: unknown): string {
  if (err instanceof OperationError || err instanceof UsageError) return err.message;
  // A database or other unexpected failure: still one line, no stack trace.
  return errorMessage(err).split("\n")[0]!;
}
