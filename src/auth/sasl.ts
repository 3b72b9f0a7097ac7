// SASL PLAIN (RFC 4616) and LOGIN decoding. Pure: base64 text in, credentials or a problem out.

export interface Credentials {
  username: string;
  password: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function decodeBase64(text: string): string | undefined {
  if (text.length % 4 !== 0 || !BASE64.test(text)) return undefined;
  return Buffer.from(text, "base64").toString("utf8");
}

export function encodeBase64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

/** PLAIN: [authzid] NUL authcid NUL passwd. An authzid other than the login is refused. */
export function decodePlain(response: string): Credentials | "malformed" | "authzid" {
  const text = decodeBase64(response);
  if (text === undefined) return "malformed";
  const parts = text.split("\0");
  if (parts.length !== 3 || !parts[1] || !parts[2]) return "malformed";
  const [authzid, username, password] = parts as [string, string, string];
  if (authzid !== "" && authzid.toLowerCase() !== username.toLowerCase()) return "authzid";
  return { username, password };
}
