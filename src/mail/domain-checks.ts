// Does a mail domain exist? The question behind Postfix's reject_unknown_sender_domain and
// reject_unknown_recipient_domain: MX records, else an address record (the implicit MX).
import { findMx } from "../dns/mx.ts";
import type { Resolver } from "../dns/resolver.ts";

export type MailDomainStatus = "exists" | "no-domain" | "null-mx" | "temporary";

export async function mailDomainStatus(resolver: Resolver, domain: string): Promise<MailDomainStatus> {
  const choice = await findMx(resolver, domain);
  if (choice.kind !== "hosts") return choice.kind === "temporary" ? "temporary" : choice.kind;
  if (!choice.implicit) return "exists";
  const answers = await Promise.allSettled([resolver.resolve(domain, "A"), resolver.resolve(domain, "AAAA")]);
  if (answers.some((a) => a.status === "fulfilled" && a.value.length > 0)) return "exists";
  const final = (a: PromiseSettledResult<unknown>) =>
    a.status === "rejected" && ["ENOTFOUND", "ENODATA"].includes((a.reason as { code?: string }).code ?? "");
  return answers.every(final) ? "no-domain" : "temporary";
}
