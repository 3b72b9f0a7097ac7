// Outbound mail from a local domain leaves DKIM-signed with both of the domain's keys.
import type { Directory } from "../domains/directory.ts";
import { domainOf } from "./address.ts";
import { dkimSign } from "./dkim-sign.ts";
import { fieldAddresses, readHeaders } from "./headers.ts";

/** The message with DKIM-Signature fields on top when its From domain is ours, else as it was. */
export async function signIfLocal(
  directory: Directory,
  message: Uint8Array,
  now = new Date(),
): Promise<Uint8Array> {
  const from = readHeaders(message).find(([n]) => n === "from");
  const address = from ? fieldAddresses(from[1])[0] : undefined;
  const keys = address && (await directory.dkimKeys(domainOf(address)));
  if (!keys) return message;
  return Buffer.concat([Buffer.from(dkimSign(message, keys, now), "latin1"), message]);
}
