// A loop's pause between rounds that a wake-up cuts short (new work, shutdown).

export class Nap {
  private wakeUp: (() => void) | undefined;

  /** Resolves after `ms`, or at the next `wake`, whichever comes first. */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    }).finally(() => {
      this.wakeUp = undefined;
    });
  }

  /** Ends the pause in progress, if there is one. */
  wake(): void {
    this.wakeUp?.();
  }
}
