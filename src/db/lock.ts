// PGlite does not lock its data dir and two writers corrupt it for good, so the embedded
// database is guarded by flock(2) on a lock file: the kernel drops the lock when the holder dies,
// so there is never a stale lock to clean up by hand.
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";

const LOCK_EX = 2;
const LOCK_NB = 4;

const libc = dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
  flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
});

export class LockHeldError extends Error {
  constructor(
    readonly path: string,
    readonly holderPid: number | undefined,
  ) {
    super(
      `the data dir is in use by another Postern process (pid ${holderPid ?? "unknown"}); lock file ${path}`,
    );
  }
}

export interface FileLock {
  release(): void;
}

/** Takes the lock or throws LockHeldError naming the holder's PID (read from the file). */
export function acquireLock(path: string): FileLock {
  const fd = openSync(path, "a+");
  if (libc.symbols.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    throw new LockHeldError(path, readLockHolder(path));
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      ftruncateSync(fd, 0);
      closeSync(fd); // closing the descriptor drops the flock
    },
  };
}

export function readLockHolder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    return Number.isFinite(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}
