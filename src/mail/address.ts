// Address and domain syntax as the gateway accepts it (RFC 5321 mailbox, lower-cased: like
// Postfix, Postern treats local parts case-insensitively).

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// dot-atom text of RFC 5322 plus any non-ASCII (SMTPUTF8).
const LOCAL_PART =
  /^[a-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;

/** Returns why `name` is not a usable domain name, or undefined when it is. */
export function domainProblem(name: string): string | undefined {
  if (name.length > 253) return "longer than 253 characters";
  const labels = name.split(".");
  if (labels.length < 2) return "needs at least two labels (example.com)";
  const bad = labels.find((l) => !LABEL.test(l));
  if (bad !== undefined) return `label "${bad}" is not letters, digits and inner hyphens (1-63 characters)`;
  if (/^\d+$/.test(labels.at(-1)!)) return "the last label is numeric";
  return undefined;
}

export function normalizeDomain(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, "");
}

/** Returns why `address` is not a usable mailbox, or undefined when it is. */
export function addressProblem(address: string): string | undefined {
  const at = address.lastIndexOf("@");
  if (at <= 0) return "expected local@domain";
  const local = address.slice(0, at);
  if (new TextEncoder().encode(local).length > 64) return "local part longer than 64 octets";
  if (!LOCAL_PART.test(local)) return `local part "${local}" has characters not allowed in an address`;
  const problem = domainProblem(address.slice(at + 1));
  return problem && `domain ${problem}`;
}

export function normalizeAddress(address: string): string {
  return address.trim().toLowerCase();
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf("@") + 1);
}

/**
 * A sender or route pattern: an exact address or `*@domain`. Returns why it is not one, or
 * undefined when it is.
 */
export function patternProblem(pattern: string): string | undefined {
  if (pattern.startsWith("*@")) {
    const problem = domainProblem(pattern.slice(2));
    return problem && `domain ${problem}`;
  }
  return addressProblem(pattern);
}

export function patternMatches(pattern: string, address: string): boolean {
  return pattern.startsWith("*@") ? domainOf(address) === pattern.slice(2) : pattern === address;
}
