import { addressProblem, normalizeAddress } from "../mail/address.ts";
import {
  addSuppression,
  listSuppressions,
  removeSuppression,
  suppressionDomains,
} from "../queue/suppressions.ts";
import { type CommandContext, OperationError, parseVerbArgs, type VerbGroup } from "./context.ts";

function addressArg(raw: string): string {
  const address = normalizeAddress(raw);
  const problem = addressProblem(address);
  if (problem) throw new OperationError(`invalid address "${raw}": ${problem}`);
  return address;
}

/** `--domain D` (which must be local), or every local domain. */
async function domainsArg(ctx: CommandContext, domain: string | undefined): Promise<string[]> {
  const names = await suppressionDomains(ctx.db, domain);
  if (names.length > 0) return names;
  throw new OperationError(
    domain
      ? `domain ${domain} is not local (add it with: postern domain add ${domain})`
      : "no local domain (add one with: postern domain add DOMAIN)",
  );
}

const DOMAIN_OPTION = { domain: { type: "string" } } as const;

export const suppressionVerbs: VerbGroup = {
  usage:
    "suppression ls [--domain D] | suppression add ADDRESS [--domain D] | suppression rm ADDRESS [--domain D]",
  subverbs: {
    async ls(ctx, args) {
      const { values } = parseVerbArgs(args, DOMAIN_OPTION, 0);
      for (const s of await listSuppressions(ctx.db, values.domain)) {
        ctx.io.out(`${s.domain}\t${s.address}\t${s.reason}\t${s.at.toISOString()}\t${s.code ?? ""}\n`);
      }
    },
    async add(ctx, args) {
      const { values, positionals } = parseVerbArgs(args, DOMAIN_OPTION, 1);
      const address = addressArg(positionals[0]!);
      for (const domain of await domainsArg(ctx, values.domain)) {
        const added = await addSuppression(ctx.db, domain, address, "added by hand");
        ctx.io.out(`${address} ${added ? "suppressed" : "was already suppressed"} for ${domain}\n`);
      }
    },
    async rm(ctx, args) {
      const { values, positionals } = parseVerbArgs(args, DOMAIN_OPTION, 1);
      const address = addressArg(positionals[0]!);
      let removed = 0;
      for (const domain of await domainsArg(ctx, values.domain)) {
        if (await removeSuppression(ctx.db, domain, address)) {
          removed++;
          ctx.io.out(`${address} no longer suppressed for ${domain}\n`);
        }
      }
      if (removed === 0) throw new OperationError(`${address} is not suppressed`);
    },
  },
};
