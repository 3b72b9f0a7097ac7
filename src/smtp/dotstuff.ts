// Outgoing message content for DATA: line ends made CRLF, dot-stuffed (RFC 5321 4.5.2), ended
// with <CRLF>.<CRLF>. Pure. The encoder yields the wire bytes in pieces, views into the message
// where it goes out unchanged, so a 25 MB message never sits in memory twice over.
//
// Line ends: CRLF stays; a bare LF and a bare CR each become CRLF. We never emit a bare LF or CR
// (RFC 5321 2.3.8), so no receiver can read our message differently from another (smuggling).

import { indexOrEnd } from "../bytes.ts";

const CR = 13;
const LF = 10;
const DOT = 46;

/** Largest piece the encoder hands out. */
export const DATA_CHUNK_OCTETS = 64 * 1024;

/**
 * Runs kept as they are from this length on are handed out as views; shorter ones are copied, so
 * that a message with a fix every few KiB is not written a few KiB (and an octet) at a time.
 */
const VIEW_FROM = 16 * 1024;

const CRLF = new Uint8Array([CR, LF]);
const STUFFED_DOT = new Uint8Array([DOT]);
const END_AFTER_LINE = new Uint8Array([DOT, CR, LF]);
const END_INSIDE_LINE = new Uint8Array([CR, LF, DOT, CR, LF]);

/**
 * Finds, in order, where the wire form differs from the message: a dot to stuff before `at`
 * (`dot`), or a CR or LF at `at` to make CRLF. Lines are found by native scans for CR and LF,
 * each next position kept until passed, so a message of bare LFs stays linear; a stored message,
 * CRLF throughout with hardly a line starting with a dot, has no fix at all. Allocates nothing
 * per fix: a message with one on every line is common enough (bare LFs).
 */
class FixFinder {
  at = 0;
  dot = false;
  private line = 0;
  private nextCr = -1;
  private nextLf = -1;
  /** A fix at `line` is still to report after the dot there (a line that is a lone "." + bare LF). */
  private lineDotDone = false;

  constructor(private readonly data: Uint8Array) {}

  /** Moves to the next fix; false when there is none. */
  next(): boolean {
    const data = this.data;
    const n = data.length;
    while (this.line < n) {
      const line = this.line;
      if (!this.lineDotDone && data[line] === DOT) {
        this.lineDotDone = true;
        return this.found(line, true);
      }
      if (this.nextCr < line) this.nextCr = indexOrEnd(data, CR, line);
      if (this.nextLf < line) this.nextLf = indexOrEnd(data, LF, line);
      const end = Math.min(this.nextCr, this.nextLf);
      this.lineDotDone = false;
      if (end === n) break;
      if (end === this.nextCr && data[end + 1] === LF) {
        this.line = end + 2;
        continue;
      }
      this.line = end + 1;
      return this.found(end, false);
    }
    this.line = n;
    return false;
  }

  private found(at: number, dot: boolean): true {
    this.at = at;
    this.dot = dot;
    return true;
  }
}

function endsInsideLine(data: Uint8Array): boolean {
  const last = data[data.length - 1];
  return last !== undefined && last !== CR && last !== LF;
}

/**
 * Wire form of `data` after DATA's 354, terminator included, in pieces of at most `chunkSize`
 * octets; concatenated, the pieces are the whole DATA body. What goes out as it is (nearly all of
 * a stored message) is handed out as views into `data`, not copied: sending a 25 MiB message makes
 * no 25 MiB of garbage for the collector to find late. `data` must not change meanwhile.
 */
export function* encodeData(data: Uint8Array, chunkSize = DATA_CHUNK_OCTETS): Generator<Uint8Array> {
  if (!(chunkSize >= 1)) throw new RangeError(`encodeData: a chunk size of ${chunkSize}`);
  const out = new WirePieces(data, chunkSize);
  const fix = new FixFinder(data);
  let kept = 0;
  while (fix.next()) {
    out.keep(kept, fix.at);
    out.copy(fix.dot ? STUFFED_DOT : CRLF);
    kept = fix.dot ? fix.at : fix.at + 1;
    if (out.ready.length > 0) yield* out.take();
  }
  out.keep(kept, data.length);
  out.copy(endsInsideLine(data) ? END_INSIDE_LINE : END_AFTER_LINE);
  out.end();
  yield* out.take();
}

/** Pieces of the wire form of `data`: long runs as views, the rest gathered into copies of up to `size`. */
class WirePieces {
  ready: Uint8Array[] = [];
  private gathered: Uint8Array | undefined;
  private filled = 0;

  constructor(
    private readonly data: Uint8Array,
    private readonly size: number,
  ) {}

  /** `data` from `start` to `end`, which goes out as it is. */
  keep(start: number, end: number): void {
    if (end - start < Math.min(VIEW_FROM, this.size)) {
      // copied octet by octet: a view per line of a message of bare LFs costs more
      for (let at = start; at < end; at++) this.append(this.data[at]!);
      return;
    }
    this.end();
    for (let at = start; at < end; at += this.size)
      this.ready.push(this.data.subarray(at, Math.min(end, at + this.size)));
  }

  copy(octets: Uint8Array): void {
    for (const octet of octets) this.append(octet);
  }

  private append(octet: number): void {
    this.gathered ??= new Uint8Array(this.size);
    this.gathered[this.filled++] = octet;
    if (this.filled === this.size) this.end();
  }

  /**
   * Hands out what is gathered so far. A little of it (a stuffed dot between two views) goes as
   * a copy of its size and the buffer is used again: a fix every few KiB would otherwise drop a
   * zeroed buffer of `size` per fix.
   */
  end(): void {
    if (!this.gathered || this.filled === 0) return;
    if (this.filled < this.size / 4) {
      this.ready.push(this.gathered.slice(0, this.filled));
    } else {
      this.ready.push(this.gathered.subarray(0, this.filled));
      this.gathered = undefined;
    }
    this.filled = 0;
  }

  take(): Uint8Array[] {
    const pieces = this.ready;
    this.ready = [];
    return pieces;
  }
}

/** The whole DATA body at once (tests, small messages). */
export function encodeDataAll(data: Uint8Array): Uint8Array {
  return Buffer.concat([...encodeData(data)]);
}

/**
 * Octets of the message once its line ends are CRLF and it ends with one: what SIZE= declares
 * (RFC 1870: the message size, without dot-stuffing or the terminator).
 */
export function normalizedSize(data: Uint8Array): number {
  let size = data.length;
  const fix = new FixFinder(data);
  while (fix.next()) if (!fix.dot) size++;
  return endsInsideLine(data) ? size + 2 : size;
}
