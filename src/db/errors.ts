// Telling "the database is out of reach" apart from "the database said no": the first passes
// (a restart, a fail-over) and is worth waiting out; the second will say no again.

/** postgres.js's own codes for a connection that broke or never came up, and socket errors. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs of a server going away or not taking connections: class 08 (connection exception),
 * 57P01-57P03 (shut down by an administrator, a crash, starting up) and 53300 (too many
 * connections).
 */
const unavailableState = (code: string) =>
  code.startsWith("08") || /^57P0[123]$/.test(code) || code === "53300";

/** True when `err` (or what caused it: drizzle wraps driver errors) says the database is out of reach. */
export function isConnectionError(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (CONNECTION_CODES.has(code) || unavailableState(code))) return true;
  }
  return false;
}
