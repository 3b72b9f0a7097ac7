// Bun's socket.write may take only part of what it is given and returns how much it took:
// the rest waits here and goes out from the socket's `drain` handler, in order.
//
// A peer that sends commands and never reads their replies would make that backlog grow without
// bound (a pipelined flood of NOOPs costs it nothing). So past a high-water mark the writer stops
// reading from the socket and resumes once the peer has taken the backlog down to the low mark:
// TCP's own flow control then holds the peer back.
import type { Socket } from "bun";

/** Output waiting for the peer before we stop reading its input. */
export const OUTPUT_HIGH_WATER = 256 * 1024;
const OUTPUT_LOW_WATER = 64 * 1024;

export class SocketWriter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private endWhenFlushed = false;
  private paused = false;

  constructor(private socket: Socket<unknown>) {}

  /** After STARTTLS the same writer serves the TLS socket. */
  retarget(socket: Socket<unknown>): void {
    if (this.paused) {
      this.socket.resume();
      this.paused = false;
    }
    this.socket = socket;
  }

  get buffered(): number {
    return this.pendingBytes;
  }

  write(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    if (this.pending.length > 0) {
      this.queue(bytes);
      return;
    }
    const written = this.socket.write(bytes);
    if (written < bytes.length) this.queue(bytes.subarray(Math.max(written, 0)));
  }

  /** Call from the socket's `drain` handler. */
  drain(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const written = this.socket.write(head);
      if (written > 0) this.pendingBytes -= written;
      if (written < head.length) {
        this.pending[0] = head.subarray(Math.max(written, 0));
        break;
      }
      this.pending.shift();
    }
    if (this.paused && this.pendingBytes <= OUTPUT_LOW_WATER) {
      this.paused = false;
      this.socket.resume();
    }
    if (this.pending.length === 0 && this.endWhenFlushed) this.socket.end();
  }

  /** Closes the socket once everything written so far is out. */
  end(): void {
    this.endWhenFlushed = true;
    if (this.pending.length === 0) this.socket.end();
  }

  private queue(bytes: Uint8Array): void {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (!this.paused && this.pendingBytes > OUTPUT_HIGH_WATER) {
      this.paused = true;
      this.socket.pause();
    }
  }
}
