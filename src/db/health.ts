// Whether the database answers, watched from one place: one log line when it stops answering and
// one when it is back, instead of a line from every part that fails meanwhile, and a signal for
// the parts that must pick up again on their own (the scheduler claims again at once).
import type { Logger } from "../log.ts";

export interface HealthOptions {
  /** True when the database answers a trivial query (bounded in time). */
  ping(): Promise<boolean>;
  log: Logger;
  /** Told of every change, after it is logged. */
  onChange?(up: boolean): void;
  /** Checks while it answers. */
  upEveryMs?: number;
  /** Checks while it does not: how soon "back" is noticed. */
  downEveryMs?: number;
}

export class DatabaseHealth {
  private state = true;
  private downSince = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private checking: Promise<void> | undefined;
  private stopped = true;

  constructor(private readonly o: HealthOptions) {}

  /** False from the first failed check until a check succeeds again. */
  get up(): boolean {
    return this.state;
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.checking;
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const ms = this.state ? (this.o.upEveryMs ?? 5000) : (this.o.downEveryMs ?? 1000);
    this.timer = setTimeout(() => void this.check(), ms);
  }

  private check(): Promise<void> {
    this.checking ??= this.o
      .ping()
      .catch(() => false)
      .then((ok) => this.record(ok))
      .finally(() => {
        this.checking = undefined;
        this.schedule();
      });
    return this.checking;
  }

  private record(ok: boolean): void {
    if (ok === this.state) return;
    this.state = ok;
    if (ok) {
      this.o.log.warn("database reachable again", {
        downSeconds: Math.round((Date.now() - this.downSince) / 1000),
      });
    } else {
      this.downSince = Date.now();
      this.o.log.error("database unreachable: SMTP answers 4xx, the API 503, delivery paused", {});
    }
    try {
      this.o.onChange?.(ok);
    } catch (err) {
      this.o.log.error("reacting to the database state failed", { error: String(err) });
    }
  }
}
