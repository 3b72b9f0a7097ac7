// Bun's socket.write may take only part of what it is given and returns how much it took:
// the rest waits here and goes out from the socket's `drain` handler, in order.
import type { Socket } from "bun";

export class SocketWriter {
  private pending: Uint8Array[] = [];
  private endWhenFlushed = false;

  constructor(private socket: Socket<unknown>) {}

  /** After STARTTLS the same writer serves the TLS socket. */
  retarget(socket: Socket<unknown>): void {
    this.socket = socket;
  }

  get buffered(): number {
    return this.pending.reduce((n, p) => n + p.length, 0);
  }

  write(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    if (this.pending.length > 0) {
      this.pending.push(bytes);
      return;
    }
    const written = this.socket.write(bytes);
    if (written < bytes.length) this.pending.push(bytes.subarray(Math.max(written, 0)));
  }

  /** Call from the socket's `drain` handler. */
  drain(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const written = this.socket.write(head);
      if (written < head.length) {
        this.pending[0] = head.subarray(Math.max(written, 0));
        return;
      }
      this.pending.shift();
    }
    if (this.endWhenFlushed) this.socket.end();
  }

  /** Closes the socket once everything written so far is out. */
  end(): void {
    this.endWhenFlushed = true;
    if (this.pending.length === 0) this.socket.end();
  }
}
