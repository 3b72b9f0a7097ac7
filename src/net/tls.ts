// The server's certificate: the operator's PEM files, or a self-signed pair made once in the
// data dir (opportunistic STARTTLS between MTAs does not verify certificates, RFC 7435).

import { constants, generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import forge from "node-forge";
import type { Config } from "../config.ts";

export interface TlsMaterial {
  cert: string;
  key: string;
}

/**
 * TLS 1.2 suites our listeners accept: ECDHE key exchange (forward secrecy: a key stolen later
 * does not open recorded sessions, and passwords travel on 587 and 465) with an AEAD cipher (no
 * CBC with its padding oracles). TLS 1.3 suites are all of that kind and stay as they are.
 */
export const SERVER_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** The options of every listening TLS context, implicit (465) and after STARTTLS: TLS 1.2 at least. */
export function serverTlsOptions(material: TlsMaterial): TlsMaterial & {
  ciphers: string;
  secureOptions: number;
} {
  return {
    ...material,
    ciphers: SERVER_CIPHERS,
    secureOptions: constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1,
  };
}

export async function loadTlsMaterial(
  config: Pick<Config, "tlsCert" | "tlsKey" | "dataDir" | "hostname">,
): Promise<TlsMaterial> {
  if (config.tlsCert && config.tlsKey) {
    return {
      cert: readPem(config.tlsCert, "POSTERN_TLS_CERT"),
      key: readPem(config.tlsKey, "POSTERN_TLS_KEY"),
    };
  }
  const certPath = join(config.dataDir, "tls-cert.pem");
  const keyPath = join(config.dataDir, "tls-key.pem");
  if (existsSync(certPath) && existsSync(keyPath)) {
    return { cert: readFileSync(certPath, "utf8"), key: readFileSync(keyPath, "utf8") };
  }
  const pems = selfSigned(config.hostname);
  mkdirSync(config.dataDir, { recursive: true });
  writeFileSync(keyPath, pems.key, { mode: 0o600 });
  writeFileSync(certPath, pems.cert);
  return pems;
}

// node:crypto makes the key (fast, native); node-forge only assembles and signs the certificate.
function selfSigned(hostname: string): TlsMaterial {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { format: "pem", type: "pkcs8" },
    publicKeyEncoding: { format: "pem", type: "spki" },
  });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = `01${randomBytes(15).toString("hex")}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 10 * 365 * 86400_000);
  const subject = [{ name: "commonName", value: hostname }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames: [{ type: 2, value: hostname }] },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: privateKey };
}

function readPem(path: string, variable: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`${variable}=${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}
