// Which shape a destination falls under. Pure: a shape names a recipient domain (`gmail.com`) or
// an MX host suffix (`mx:.google.com`); a domain pattern is the closer match and wins.
import { domainProblem, normalizeDomain } from "../mail/address.ts";

export type ShapePattern = { kind: "domain"; domain: string } | { kind: "mx"; suffix: string };

/** The pattern, or a one-line reason it is not one. */
export function parseShapePattern(text: string): ShapePattern | string {
  const mx = /^mx:(.+)$/i.exec(text.trim());
  const name = normalizeDomain((mx ? mx[1]! : text).replace(/^\./, ""));
  const problem = domainProblem(name);
  if (problem) return `"${text}": ${problem}`;
  return mx ? { kind: "mx", suffix: `.${name}` } : { kind: "domain", domain: name };
}

/** How a pattern is stored and shown: `gmail.com`, `mx:.google.com`. */
export function formatShapePattern(p: ShapePattern): string {
  return p.kind === "domain" ? p.domain : `mx:${p.suffix}`;
}

/** The pattern (as stored) covering mail to `domain` through `mxHosts`, if any. */
export function matchShape(
  patterns: readonly string[],
  domain: string,
  mxHosts: readonly string[],
): string | undefined {
  const parsed = patterns.flatMap((text) => {
    const p = parseShapePattern(text);
    return typeof p === "string" ? [] : [{ text, p }];
  });
  const d = domain.toLowerCase();
  const byDomain = parsed.find(({ p }) => p.kind === "domain" && p.domain === d);
  if (byDomain) return byDomain.text;
  const hosts = mxHosts.map((h) => `.${h.toLowerCase().replace(/\.$/, "")}`);
  return parsed.find(({ p }) => p.kind === "mx" && hosts.some((h) => h.endsWith(p.suffix)))?.text;
}
