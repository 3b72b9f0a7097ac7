// Buffer's methods (indexOf, toString, base64) on bytes we hold as a Uint8Array, without copying
// them: Buffer.from(uint8Array) copies, and whole messages pass through here.

/** A Buffer over the same memory as `bytes`. */
export function bufferView(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
