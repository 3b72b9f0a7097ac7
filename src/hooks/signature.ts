// Standard Webhooks signing (standardwebhooks.com): the receiver recomputes the HMAC-SHA256 of
// `id.timestamp.body` under the secret and compares. The secret is `whsec_` + base64 of the key.
import { createHmac, randomBytes } from "node:crypto";

const PREFIX = "whsec_";

/** A new hook secret: 24 random bytes, in the Standard Webhooks form. */
export function newHookSecret(): string {
  return PREFIX + randomBytes(24).toString("base64");
}

/** Makes the headers that carry and sign one POST of `body`, under one hook's secret. */
export type WebhookSigner = (id: string, at: Date, body: string) => Record<string, string>;

/** The signer for `secret`, whose key is decoded once for all the POSTs it signs. */
export function webhookSigner(secret: string): WebhookSigner {
  const key = Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, "base64");
  return (id, at, body) => {
    const timestamp = String(Math.floor(at.getTime() / 1000));
    const mac = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
    return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": `v1,${mac}` };
  };
}
