// The server's certificate: the operator's PEM files, or a self-signed pair made once in the
// data dir (opportunistic STARTTLS between MTAs does not verify certificates, RFC 7435).

import { constants, createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
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

export type ServerTlsOptions = TlsMaterial & { ciphers: string; secureOptions: number };

/** The options of every listening TLS context, implicit (465) and after STARTTLS: TLS 1.2 at least. */
export function serverTlsOptions(material: TlsMaterial): ServerTlsOptions {
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

/** The certificates of a roots file (POSTERN_EXTRA_CA_FILE, POSTERN_ACME_CA_FILE), one PEM each; none when unset. */
export function readRoots(path: string | undefined, variable: string): string[] {
  if (!path) return [];
  const roots = readPem(path, variable).match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
  );
  if (!roots) throw new Error(`${variable}=${path} holds no PEM certificate`);
  return roots;
}

/** Why a certificate and key cannot be served together, or undefined when they can. */
export function tlsPairProblem(material: TlsMaterial): string | undefined {
  try {
    const cert = new X509Certificate(material.cert);
    if (!cert.checkPrivateKey(createPrivateKey(material.key))) return "the key is not the certificate's";
    if (new Date(cert.validTo).getTime() < Date.now()) return `the certificate expired on ${cert.validTo}`;
    return undefined;
  } catch (err) {
    return `not a PEM certificate and key: ${(err as Error).message}`;
  }
}

/**
 * The certificate the listeners serve now. With POSTERN_TLS_CERT/KEY the files are read again
 * when they change (`reload`: on SIGHUP and now and then): new connections get the new pair,
 * sessions in progress keep theirs. A pair that does not go together is refused and the one in
 * service stays.
 */
export class TlsStore {
  private options: ServerTlsOptions;
  private stamp: string;

  private constructor(
    /** The operator's files; none once ACME's certificate is installed (it takes over). */
    private files: { cert: string; key: string } | undefined,
    material: TlsMaterial,
  ) {
    this.options = serverTlsOptions(material);
    this.stamp = this.filesStamp();
  }

  static async load(config: Pick<Config, "tlsCert" | "tlsKey" | "dataDir" | "hostname">): Promise<TlsStore> {
    const files = config.tlsCert && config.tlsKey ? { cert: config.tlsCert, key: config.tlsKey } : undefined;
    return new TlsStore(files, await loadTlsMaterial(config));
  }

  /** The same object until a reload: one TLS context per certificate, not per connection. */
  current(): ServerTlsOptions {
    return this.options;
  }

  /** The serial number of the certificate in service (logs, tests). */
  serial(): string {
    return new X509Certificate(this.options.cert).serialNumber;
  }

  notAfter(): Date {
    return new Date(new X509Certificate(this.options.cert).validTo);
  }

  /** Serves a certificate ACME got from now on; the files are no longer read. */
  install(material: TlsMaterial): void {
    this.files = undefined;
    this.options = serverTlsOptions(material);
  }

  /** Reads the files again if they changed (or when `force`d); says what came of it. */
  reload(
    force = false,
  ): { kind: "unchanged" } | { kind: "reloaded"; serial: string } | { kind: "refused"; why: string } {
    if (!this.files) return { kind: "unchanged" };
    const stamp = this.filesStamp();
    if (!force && stamp === this.stamp) return { kind: "unchanged" };
    let material: TlsMaterial;
    try {
      material = {
        cert: readPem(this.files.cert, "POSTERN_TLS_CERT"),
        key: readPem(this.files.key, "POSTERN_TLS_KEY"),
      };
    } catch (err) {
      return { kind: "refused", why: (err as Error).message };
    }
    const problem = tlsPairProblem(material);
    if (problem) return { kind: "refused", why: problem };
    this.stamp = stamp;
    if (material.cert === this.options.cert && material.key === this.options.key)
      return { kind: "unchanged" };
    this.options = serverTlsOptions(material);
    return { kind: "reloaded", serial: this.serial() };
  }

  private filesStamp(): string {
    if (!this.files) return "";
    try {
      return [this.files.cert, this.files.key]
        .map((f) => {
          const st = statSync(f);
          return `${st.mtimeMs}:${st.size}:${st.ino}`;
        })
        .join("|");
    } catch {
      return "unreadable";
    }
  }
}
