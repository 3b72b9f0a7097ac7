// Outgoing message content for DATA: line ends made CRLF, dot-stuffed (RFC 5321 4.5.2), ended
// with <CRLF>.<CRLF>. Pure. The encoder yields the wire bytes in pieces of about `chunkSize`, so
// a 25 MB message never sits in memory twice over.
//
// Line ends: CRLF stays; a bare LF and a bare CR each become CRLF. We never emit a bare LF or CR
// (RFC 5321 2.3.8), so no receiver can read our message differently from another (smuggling).

const CR = 13;
const LF = 10;
const DOT = 46;

/** Size of the pieces the encoder hands out. */
export const DATA_CHUNK_OCTETS = 64 * 1024;

/**
 * Wire form of `data` after DATA's 354, terminator included, in pieces of `chunkSize` octets
 * (the last one shorter). Concatenated, the pieces are the whole DATA body.
 */
export function* encodeData(data: Uint8Array, chunkSize = DATA_CHUNK_OCTETS): Generator<Uint8Array> {
  // Room for the worst case of one input byte: "." stuffed at a line start after a line end.
  let out = new Uint8Array(chunkSize + 8);
  let n = 0;
  let lineStart = true;
  const n0 = data.length;
  for (let i = 0; i < n0; i++) {
    const b = data[i]!;
    if (b === CR) {
      out[n++] = CR;
      out[n++] = LF;
      if (data[i + 1] === LF) i++;
      lineStart = true;
    } else if (b === LF) {
      out[n++] = CR;
      out[n++] = LF;
      lineStart = true;
    } else {
      if (lineStart && b === DOT) out[n++] = DOT;
      out[n++] = b;
      lineStart = false;
    }
    if (n >= chunkSize) {
      yield out.subarray(0, n);
      out = new Uint8Array(chunkSize + 8);
      n = 0;
    }
  }
  const tail = lineStart ? ".\r\n" : "\r\n.\r\n";
  for (let k = 0; k < tail.length; k++) out[n++] = tail.charCodeAt(k);
  yield out.subarray(0, n);
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
  let size = 0;
  let lineStart = true;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === CR) {
      size += 2;
      if (data[i + 1] === LF) i++;
      lineStart = true;
    } else if (b === LF) {
      size += 2;
      lineStart = true;
    } else {
      size++;
      lineStart = false;
    }
  }
  return lineStart ? size : size + 2;
}
