// Buffer's methods (indexOf, toString, base64) on bytes we hold as a Uint8Array, without copying
// them: Buffer.from(uint8Array) copies, and whole messages pass through here.

/** A Buffer over the same memory as `bytes`. */
export function bufferView(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Where `octet` next is in `bytes` from `from` on, by a native scan; `bytes.length` when nowhere. */
export function indexOrEnd(bytes: Uint8Array, octet: number, from: number): number {
  const at = bytes.indexOf(octet, from);
  return at < 0 ? bytes.length : at;
}
