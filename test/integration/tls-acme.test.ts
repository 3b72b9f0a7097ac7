// src/acme/order.ts against a real CA: pebble validates HTTP-01 by fetching from our responder on
// loopback, resolving the names through an in-process DNS server.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { connect, createServer } from "node:tls";
import { type Http01Publisher, newAccountKey, obtainCertificate } from "../../src/acme/order.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { Http01Responder } from "../helpers/http01.ts";
import { havePebble, type Pebble, startPebble } from "../helpers/pebble.ts";
import { freePort } from "../helpers/serve.ts";

const MAIL = "mail.example.test";
const MTA_STS = "mta-sts.example.test";
const NOWHERE = "nowhere.example.test";

/** A TLS handshake with a server presenting cert/key, trusting only `roots`: "authorized" or why not. */
async function handshake(cert: string, key: string, roots: string, servername: string): Promise<string> {
  const server = createServer({ cert, key }, (s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  try {
    return await new Promise<string>((resolve) => {
      const s = connect({ host: "127.0.0.1", port, servername, ca: roots }, () => {
        resolve(s.authorized ? "authorized" : String(s.authorizationError));
        s.destroy();
      });
      s.on("error", (e) => resolve(e.message));
    });
  } finally {
    server.close();
  }
}

/** The certificates of a PEM bundle, in order. */
const splitPems = (pem: string): X509Certificate[] =>
  (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );

describe.skipIf(!havePebble)("obtainCertificate against pebble", () => {
  let dns: DnsTestServer;
  let responder: Http01Responder;
  let web: { port: number; stop(): void };
  let pebble: Pebble;
  const accountKey = newAccountKey();
  let accountUrl = "";

  // Tokens published and withdrawn, to check that none is left behind.
  const published = new Set<string>();
  const recording: Http01Publisher = {
    set(token, keyAuthorization) {
      published.add(token);
      responder.set(token, keyAuthorization);
    },
    remove(token) {
      published.delete(token);
      responder.remove(token);
    },
  };

  beforeAll(async () => {
    dns = await startDnsServer({ [MAIL]: { A: ["127.0.0.1"] }, [MTA_STS]: { A: ["127.0.0.1"] } });
    responder = new Http01Responder();
    web = responder.listen("127.0.0.1", 0);
    pebble = await startPebble({ httpPort: web.port, dnsSpec: dns.spec });
  });

  afterAll(async () => {
    await pebble?.stop();
    web?.stop();
    await dns?.close();
  });

  test("a certificate for two names that verifies against pebble's root", async () => {
    const got = await obtainCertificate({
      directoryUrl: pebble.directoryUrl,
      caPem: pebble.apiCaPem,
      account: { keyPem: accountKey },
      email: "postmaster@example.test",
      names: [MAIL, MTA_STS],
      http01: recording,
    });
    accountUrl = got.accountUrl;
    expect(accountUrl).toStartWith(new URL(pebble.directoryUrl).origin);
    expect(published.size).toBe(0);

    const chain = splitPems(got.certPem);
    expect(chain.length).toBeGreaterThanOrEqual(2);
    const leaf = chain[0]!;
    expect(leaf.subjectAltName).toContain(`DNS:${MAIL}`);
    expect(leaf.subjectAltName).toContain(`DNS:${MTA_STS}`);
    expect(leaf.subject).toContain(`CN=${MAIL}`);
    expect(leaf.checkPrivateKey(createPrivateKey(got.keyPem))).toBe(true);
    expect(createPrivateKey(got.keyPem).asymmetricKeyType).toBe("rsa");
    expect(got.serial).toBe(leaf.serialNumber);
    expect(got.notBefore.getTime()).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(got.notAfter.getTime()).toBeGreaterThan(Date.now());

    // each certificate signed by the next, the last by pebble's root
    const roots = await pebble.issuingRoots();
    const root = splitPems(roots)[0]!;
    const issuers = [...chain.slice(1), root];
    chain.forEach((cert, i) => {
      expect(cert.checkIssued(issuers[i]!)).toBe(true);
      expect(cert.verify(issuers[i]!.publicKey)).toBe(true);
    });
    expect(await handshake(got.certPem, got.keyPem, roots, MTA_STS)).toBe("authorized");
    expect(await handshake(got.certPem, got.keyPem, roots, MAIL)).toBe("authorized");
  });

  test("the same account key orders again, with or without its URL, each time a fresh key", async () => {
    expect(accountUrl).not.toBe("");
    const byKey = await obtainCertificate({
      directoryUrl: pebble.directoryUrl,
      caPem: pebble.apiCaPem,
      account: { keyPem: accountKey },
      names: [MTA_STS],
      http01: recording,
    });
    expect(byKey.accountUrl).toBe(accountUrl);
    const byUrl = await obtainCertificate({
      directoryUrl: pebble.directoryUrl,
      caPem: pebble.apiCaPem,
      account: { keyPem: accountKey, url: accountUrl },
      names: [MAIL],
      http01: recording,
    });
    expect(byUrl.accountUrl).toBe(accountUrl);
    expect(byUrl.keyPem).not.toBe(byKey.keyPem);
    expect(byUrl.serial).not.toBe(byKey.serial);
    expect(new X509Certificate(byUrl.certPem).subjectAltName).toBe(`DNS:${MAIL}`);
    expect(published.size).toBe(0);
  });

  test("a name whose token is not served: one-line rejection naming it, soon", async () => {
    const started = Date.now();
    const silent: Http01Publisher = { set() {}, remove() {} };
    const err = await obtainCertificate({
      directoryUrl: pebble.directoryUrl,
      caPem: pebble.apiCaPem,
      account: { keyPem: accountKey, url: accountUrl },
      names: [MAIL],
      http01: silent,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).toStartWith(`ACME order for ${MAIL} failed: ${MAIL}: `);
    expect(message).toContain("404");
    expect(message).not.toContain("\n");
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  test("one name resolving nowhere fails the order, naming only that name", async () => {
    const started = Date.now();
    const err = await obtainCertificate({
      directoryUrl: pebble.directoryUrl,
      caPem: pebble.apiCaPem,
      account: { keyPem: accountKey, url: accountUrl },
      names: [MAIL, NOWHERE],
      http01: recording,
    }).catch((e: unknown) => e as Error);
    const message = (err as Error).message;
    expect(message).toStartWith(`ACME order for ${MAIL}, ${NOWHERE} failed: ${NOWHERE}: `);
    expect(message).not.toContain(`${MAIL}: `);
    expect(message).not.toContain("\n");
    expect(published.size).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  test("an ACME server whose certificate is not trusted, or nobody listening: fails at once", async () => {
    const untrusted = await obtainCertificate({
      directoryUrl: pebble.directoryUrl,
      account: { keyPem: accountKey },
      names: [MAIL],
      http01: recording,
    }).catch((e: unknown) => e as Error);
    expect((untrusted as Error).message).toStartWith(
      `ACME order for ${MAIL} failed: directory ${pebble.directoryUrl} unreachable: `,
    );
    const closed = `https://127.0.0.1:${await freePort()}/dir`;
    const refused = await obtainCertificate({
      directoryUrl: closed,
      account: { keyPem: accountKey },
      names: [MAIL],
      http01: recording,
    }).catch((e: unknown) => e as Error);
    expect((refused as Error).message).toStartWith(
      `ACME order for ${MAIL} failed: directory ${closed} unreachable: `,
    );
  });
});
