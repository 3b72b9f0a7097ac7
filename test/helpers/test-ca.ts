// A certificate authority for tests: a root to trust (POSTERN_EXTRA_CA_FILE, a client's `ca`)
// and leaf certificates it issues for chosen names, valid or already expired.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";
import type { TlsMaterial } from "../../src/net/tls.ts";

export interface TestCa {
  /** The root certificate (PEM). */
  pem: string;
  /** A certificate for `names` (host names or IP addresses; the first is the CN; all are in the SAN) and its key. */
  issue(names: string[], opts?: { expired?: boolean }): TlsMaterial;
}

function keyPair() {
  return generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { format: "pem", type: "pkcs8" },
    publicKeyEncoding: { format: "pem", type: "spki" },
  });
}

const DAY = 86400_000;

export function makeTestCa(name = "Postern Test CA"): TestCa {
  const rootKey = keyPair();
  const signer = forge.pki.privateKeyFromPem(rootKey.privateKey);
  const issuer = [{ name: "commonName", value: name }];
  const make = (
    publicKey: string,
    subject: { name: string; value: string }[],
    extensions: object[],
    validity: [Date, Date],
  ) => {
    const c = forge.pki.createCertificate();
    c.publicKey = forge.pki.publicKeyFromPem(publicKey);
    c.serialNumber = `01${randomBytes(15).toString("hex")}`;
    [c.validity.notBefore, c.validity.notAfter] = validity;
    c.setSubject(subject);
    c.setIssuer(issuer);
    c.setExtensions(extensions);
    c.sign(signer, forge.md.sha256.create());
    return forge.pki.certificateToPem(c);
  };
  const now = Date.now();
  const pem = make(
    rootKey.publicKey,
    issuer,
    [
      { name: "basicConstraints", cA: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true },
    ],
    [new Date(now - DAY), new Date(now + 365 * DAY)],
  );
  return {
    pem,
    issue(names, opts = {}) {
      const leafKey = keyPair();
      const validity: [Date, Date] = opts.expired
        ? [new Date(now - 10 * DAY), new Date(now - DAY)]
        : [new Date(now - DAY), new Date(now + 90 * DAY)];
      const cert = make(
        leafKey.publicKey,
        [{ name: "commonName", value: names[0]! }],
        [
          { name: "basicConstraints", cA: false },
          { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
          { name: "extKeyUsage", serverAuth: true },
          {
            name: "subjectAltName",
            altNames: names.map((value) => (isIP(value) ? { type: 7, ip: value } : { type: 2, value })),
          },
        ],
        validity,
      );
      return { cert, key: leafKey.privateKey };
    },
  };
}
