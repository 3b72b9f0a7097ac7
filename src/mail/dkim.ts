// DKIM keys for a local domain: one RSA-2048 and one Ed25519 key (RFC 8463), stored as PKCS#8 PEM.
import { createPublicKey, generateKeyPairSync } from "node:crypto";

export interface DkimKeys {
  rsa: string;
  ed25519: string;
}

export function generateDkimKeys(): DkimKeys {
  const pem = { format: "pem", type: "pkcs8" } as const;
  const spki = { format: "pem", type: "spki" } as const;
  return {
    rsa: generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: pem, publicKeyEncoding: spki })
      .privateKey,
    ed25519: generateKeyPairSync("ed25519", { privateKeyEncoding: pem, publicKeyEncoding: spki }).privateKey,
  };
}

/** The selectors a domain's two keys are published under, derived from its base selector. */
export function dkimSelectors(selector: string): { rsa: string; ed25519: string } {
  return { rsa: `${selector}-rsa`, ed25519: `${selector}-ed25519` };
}

/** The `v=DKIM1` TXT value that publishes the public half of `privateKeyPem`. */
export function dkimTxtValue(privateKeyPem: string): string {
  const publicKey = createPublicKey(privateKeyPem);
  const der = publicKey.export({ format: "der", type: "spki" });
  if (publicKey.asymmetricKeyType === "ed25519") {
    // RFC 8463: p= is the raw 32-byte key, not the SPKI structure around it.
    return `v=DKIM1; k=ed25519; p=${der.subarray(der.length - 32).toString("base64")}`;
  }
  return `v=DKIM1; k=rsa; p=${der.toString("base64")}`;
}
