// dkimpy (Debian's python3-dkim), an independent DKIM implementation, run as a subprocess.
import { existsSync } from "node:fs";

export const PYTHON = "/usr/bin/python3";
export const haveDkimpy =
  existsSync(PYTHON) &&
  Bun.spawnSync([PYTHON, "-c", "import dkim, nacl"], { stderr: "ignore" }).exitCode === 0;

const SCRIPT = `
import sys, json, dkim
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip('.'), '').encode()
message = sys.stdin.buffer.read()
mode = sys.argv[2]
if mode == 'verify':
    count = sum(1 for h in dkim.DKIM(message).headers if h[0].lower() == b'dkim-signature')
    print(json.dumps([bool(dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)) for i in range(count)]))
else:
    selector, domain, key, algo = sys.argv[3:7]
    sig = dkim.sign(message, selector.encode(), domain.encode(), key.encode(),
                    canonicalize=(b'relaxed', b'relaxed'), signature_algorithm=algo.encode(),
                    include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
    sys.stdout.buffer.write(sig)
`;

/** Verifies every DKIM-Signature of `message` with dkimpy; one boolean per signature, in order. */
export function dkimpyVerify(message: Uint8Array, records: Record<string, string>): boolean[] {
  const res = Bun.spawnSync([PYTHON, "-c", SCRIPT, JSON.stringify(records), "verify"], { stdin: message });
  if (res.exitCode !== 0) throw new Error(`dkimpy failed: ${res.stderr.toString()}`);
  return JSON.parse(res.stdout.toString());
}

/**
 * Signs with dkimpy; returns the DKIM-Signature field to prepend. dkimpy wants an Ed25519 key as
 * the base64 of its 32-byte seed, an RSA key as PEM.
 */
export function dkimpySign(
  message: Uint8Array,
  key: {
    selector: string;
    domain: string;
    privateKeyPem: string;
    algorithm: "rsa-sha256" | "ed25519-sha256";
  },
): string {
  const res = Bun.spawnSync(
    [PYTHON, "-c", SCRIPT, "{}", "sign", key.selector, key.domain, key.privateKeyPem, key.algorithm],
    { stdin: message },
  );
  if (res.exitCode !== 0) throw new Error(`dkimpy failed: ${res.stderr.toString()}`);
  return res.stdout.toString();
}
