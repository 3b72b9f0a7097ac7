// The message-content decoder for DATA and BDAT. Pure and incremental: bytes go in as they
// arrive, split anywhere, and the result is the same as for the whole stream at once.
//
// DATA: only <CRLF>.<CRLF> ends the message (the CRLF before the dot is content); a dot at
// the start of a line is removed (RFC 5321 4.5.2). A bare LF or bare CR is never a line end:
// it is remembered so the message is refused, which closes the SMTP smuggling hole.
// BDAT: the same checks, no dot handling; the caller feeds exactly the chunk's octets.

import { indexOrEnd } from "../bytes.ts";

const CR = 13;
const LF = 10;
const DOT = 46;

/** Longest text line allowed, without its CRLF (RFC 5321 4.5.3.1.6). */
export const MAX_LINE_OCTETS = 998;

enum State {
  LineStart,
  Middle,
  AfterCr,
  DotAtLineStart,
  DotCr,
}

export interface DecodedMessage {
  /** The content, or empty when it exceeded the size cap (not kept past the cap). */
  chunks: Uint8Array[];
  size: number;
  tooBig: boolean;
  bareLf: boolean;
  bareCr: boolean;
  longLine: boolean;
}

export class MessageDecoder {
  private state = State.LineStart;
  private lineLength = 0;
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  private tooBig = false;
  private bareLf = false;
  private bareCr = false;
  private longLine = false;

  constructor(
    private readonly maxBytes: number,
    private readonly dotStuffed: boolean,
  ) {}

  /**
   * Consumes `input`. For DATA, returns the index just past the terminating "." line when it is
   * in this input (the rest belongs to the next command), else -1. For BDAT, always -1.
   */
  push(input: Uint8Array): number {
    let segmentStart = 0;
    let end = -1;
    // Where the next CR and the next LF are, from i on (input.length: none): found by a native
    // scan when i has passed them, so the text between line ends is skipped, not looked at
    // byte by byte in JS.
    let nextCr = -1;
    let nextLf = -1;
    for (let i = 0; i < input.length; i++) {
      const b = input[i]!;
      switch (this.state) {
        case State.LineStart:
          if (b === DOT && this.dotStuffed) {
            // Keep the content before the dot; the dot itself is stuffing or the terminator.
            this.keep(input.subarray(segmentStart, i));
            segmentStart = i + 1;
            this.state = State.DotAtLineStart;
            continue;
          }
          this.byte(b);
          break;
        case State.DotAtLineStart:
          if (b === CR) {
            this.keep(input.subarray(segmentStart, i));
            segmentStart = i + 1;
            this.state = State.DotCr;
            continue;
          }
          this.byte(b);
          break;
        case State.DotCr:
          if (b === LF) {
            end = i + 1;
            break;
          }
          // "." CR x: the CR is a bare CR inside the line, never a line end.
          this.bareCr = true;
          this.add(Uint8Array.of(CR));
          this.lineLength++;
          this.state = State.Middle;
          this.byte(b);
          break;
        case State.AfterCr:
          if (b === LF) {
            this.state = State.LineStart;
            this.lineLength = 0;
            continue;
          }
          this.bareCr = true;
          this.lineLength++;
          this.state = State.Middle;
          this.byte(b);
          break;
        case State.Middle:
          if (b !== CR && b !== LF) {
            if (nextCr < i) nextCr = indexOrEnd(input, CR, i);
            if (nextLf < i) nextLf = indexOrEnd(input, LF, i);
            const stop = Math.min(nextCr, nextLf);
            // what byte() does for each octet of plain text: the line grows, the state stays
            this.lineLength += stop - i;
            if (this.lineLength > MAX_LINE_OCTETS) this.longLine = true;
            i = stop - 1;
            continue;
          }
          this.byte(b);
          break;
      }
      if (end >= 0) break;
    }
    if (end >= 0) return end;
    this.keep(input.subarray(segmentStart));
    return -1;
  }

  private byte(b: number): void {
    if (b === CR) {
      this.state = State.AfterCr;
      return;
    }
    if (b === LF) this.bareLf = true;
    this.state = State.Middle;
    if (++this.lineLength > MAX_LINE_OCTETS) this.longLine = true;
  }

  // The caller hands over `input` for good (the session's are Bun's read buffers), so parts of it are kept as they are.
  private keep(part: Uint8Array): void {
    if (part.length > 0) this.add(part);
  }

  private add(part: Uint8Array): void {
    this.size += part.length;
    if (this.size > this.maxBytes) {
      this.tooBig = true;
      this.chunks.length = 0; // nothing is kept past the cap
    } else if (!this.tooBig) {
      this.chunks.push(part);
    }
  }

  result(): DecodedMessage {
    return {
      chunks: this.chunks,
      size: this.size,
      tooBig: this.tooBig,
      bareLf: this.bareLf,
      bareCr: this.bareCr || this.state === State.AfterCr,
      longLine: this.longLine,
    };
  }
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks);
}
