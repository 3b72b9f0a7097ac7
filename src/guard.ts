// The last line of defence of a running `serve`. Bun ends the process on an unhandled rejection
// or an uncaught exception, and every open session and delivery with it. Our own async paths all
// end in a reply or a logged error; these handlers are for what slips through anyway.
import { errorMessage, type Logger } from "./log.ts";

export function guardProcess(log: Logger): void {
  // A promise nobody awaited changes no state by failing: log it (it is a bug) and go on.
  process.on("unhandledRejection", (reason) => {
    log.error("unhandled rejection (a bug, please report it)", { error: errorMessage(reason) });
  });
  process.on("uncaughtException", (err) => {
    if (isPostgresWriteRace(err)) {
      log.warn("a database connection closed under a pending write: ignored", {});
      return;
    }
    // Thrown from who knows where: the state is unknown, so stop; the deliveries this process
    // held are taken over within seconds (by this process restarted, or by another node).
    log.error("uncaught exception: exiting", { error: errorMessage(err), stack: firstFrames(err) });
    process.exit(1);
  });
}

/**
 * postgres.js 3.4.x writes small buffers from a setImmediate that can run after the connection
 * closed and dropped its socket (porsager/postgres#1066, #1154, #1208, unfixed in 3.4.9). By then
 * the connection has already failed the query it carried with CONNECTION_CLOSED, so the throw has
 * nobody to tell and nothing left to undo: it is safe to ignore.
 */
export function isPostgresWriteRace(err: unknown): boolean {
  return (
    err instanceof TypeError &&
    /socket\.write|reading 'write'/.test(err.message) &&
    /\bnextWrite\b/.test(err.stack ?? "")
  );
}

function firstFrames(err: unknown): string | undefined {
  return err instanceof Error ? err.stack?.split("\n").slice(0, 6).join(" | ") : undefined;
}
