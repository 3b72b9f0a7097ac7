// The MTA-STS policy we publish for a local domain (RFC 8461 3.2): our host name as the only MX,
// and an id derived from the text, so it changes exactly when the policy does.
import { createHash } from "node:crypto";
import type { StsMode } from "./policy.ts";

export const HOSTED_MODES = ["testing", "enforce", "none"] as const satisfies readonly StsMode[];
export type HostedMode = (typeof HOSTED_MODES)[number];

/** A week under enforce (RFC 8461 suggests weeks); a day while testing, so a change spreads fast. */
const MAX_AGE = { enforce: 604800, testing: 86400 } as const;

export interface HostedPolicy {
  text: string;
  /** The `id` of the `_mta-sts` TXT record: 1-32 letters and digits. */
  id: string;
}

/** The policy of a domain in `mode` (none for `none`). */
export function hostedPolicy(mode: HostedMode, mailHost: string): HostedPolicy | undefined {
  if (mode === "none") return undefined;
  const text = `version: STSv1\r\nmode: ${mode}\r\nmx: ${mailHost.toLowerCase()}\r\nmax_age: ${MAX_AGE[mode]}\r\n`;
  return { text, id: createHash("sha256").update(text).digest("hex").slice(0, 20) };
}

export function isHostedMode(text: string): text is HostedMode {
  return (HOSTED_MODES as readonly string[]).includes(text);
}

/** A stored mode read back; anything else is a bug or a hand edit, named. */
export function hostedModeOf(text: string): HostedMode {
  if (!isHostedMode(text))
    throw new Error(`stored MTA-STS mode "${text}" is not one of ${HOSTED_MODES.join(", ")}`);
  return text;
}
