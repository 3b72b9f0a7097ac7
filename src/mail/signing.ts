// Outbound mail from a local domain leaves DKIM-signed with both of the domain's keys.
import { eq } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { domains } from "../db/schema.ts";
import { domainOf } from "./address.ts";
import { dkimSelectors } from "./dkim.ts";
import { dkimSign } from "./dkim-sign.ts";
import { readHeaders } from "./headers.ts";
import { fromAddresses } from "./submission.ts";

/** The message with DKIM-Signature fields on top when its From domain is ours, else as it was. */
export async function signIfLocal(db: Db, message: Uint8Array, now = new Date()): Promise<Uint8Array> {
  const from = readHeaders(message).find(([n]) => n === "from");
  const address = from ? fromAddresses(from[1])[0] : undefined;
  if (!address) return message;
  const [domain] = await db
    .select()
    .from(domains)
    .where(eq(domains.name, domainOf(address)));
  if (!domain) return message;
  const selectors = dkimSelectors(domain.dkimSelector);
  const signatures = dkimSign(
    message,
    [
      { domain: domain.name, selector: selectors.rsa, privateKey: domain.dkimRsaKey },
      { domain: domain.name, selector: selectors.ed25519, privateKey: domain.dkimEd25519Key },
    ],
    now,
  );
  return Buffer.concat([Buffer.from(signatures, "latin1"), message]);
}
