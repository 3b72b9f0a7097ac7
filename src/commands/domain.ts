import { asc, eq, like } from "drizzle-orm";
import { domains, routes, users } from "../db/schema.ts";
import { createResolver } from "../dns/resolver.ts";
import { checkDomain, checksFailed, formatChecks } from "../domains/check.ts";
import { type DomainKeys, domainRecords, toZoneFile } from "../domains/records.ts";
import { domainProblem, normalizeDomain } from "../mail/address.ts";
import { generateDkimKeys } from "../mail/dkim.ts";
import { POLICY_FETCH_TIMEOUT_MS, policyFetcher } from "../mta-sts/fetch.ts";
import { HOSTED_MODES, hostedModeOf, isHostedMode } from "../mta-sts/hosted.ts";
import { readRoots } from "../net/tls.ts";
import { type CommandContext, OperationError, parseVerbArgs, UsageError, type VerbGroup } from "./context.ts";

const SELECTOR = /^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$/;

function domainArg(raw: string): string {
  const name = normalizeDomain(raw);
  const problem = domainProblem(name);
  if (problem) throw new OperationError(`invalid domain "${raw}": ${problem}`);
  return name;
}

async function findDomain(ctx: CommandContext, name: string): Promise<DomainKeys> {
  const [row] = await ctx.db.select().from(domains).where(eq(domains.name, name));
  if (!row) throw new OperationError(`unknown domain ${name}`);
  return { ...row, mtaStsMode: hostedModeOf(row.mtaStsMode) };
}

export const domainVerbs: VerbGroup = {
  usage:
    "domain add DOMAIN [--selector S] [--mta-sts testing|enforce|none] | domain ls | domain rm DOMAIN | domain dns DOMAIN | domain check DOMAIN",
  subverbs: {
    async add(ctx, args) {
      const { values, positionals } = parseVerbArgs(
        args,
        { selector: { type: "string" }, "mta-sts": { type: "string" } },
        1,
      );
      const name = domainArg(positionals[0]!);
      const selector = values.selector ?? "postern";
      if (!SELECTOR.test(selector)) {
        throw new UsageError(`--selector "${selector}": expected lower-case letters, digits and hyphens`);
      }
      const mtaStsMode = values["mta-sts"] ?? "testing";
      if (!isHostedMode(mtaStsMode))
        throw new UsageError(`--mta-sts "${mtaStsMode}": expected one of ${HOSTED_MODES.join(", ")}`);
      const keys = generateDkimKeys();
      const inserted = await ctx.db
        .insert(domains)
        .values({
          name,
          dkimSelector: selector,
          dkimRsaKey: keys.rsa,
          dkimEd25519Key: keys.ed25519,
          mtaStsMode,
        })
        .onConflictDoNothing()
        .returning();
      if (inserted.length === 0) throw new OperationError(`domain ${name} already exists`);
      ctx.io.out(`; domain ${name} added. Publish these records:\n`);
      ctx.io.out(`${toZoneFile(domainRecords({ ...inserted[0]!, mtaStsMode }, ctx.config.hostname))}\n`);
    },
    async ls(ctx, args) {
      parseVerbArgs(args, {}, 0);
      const rows = await ctx.db
        .select({ name: domains.name, selector: domains.dkimSelector, createdAt: domains.createdAt })
        .from(domains)
        .orderBy(asc(domains.name));
      for (const r of rows)
        ctx.io.out(`${r.name}\tselector=${r.selector}\tadded=${r.createdAt.toISOString()}\n`);
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const name = domainArg(positionals[0]!);
      await ctx.db.transaction(async (tx) => {
        const suffix = `%@${name.replace(/[\\%_]/g, "\\$&")}`;
        const u = await tx.$count(users, like(users.address, suffix));
        const r = await tx.$count(routes, like(routes.pattern, suffix));
        if (u || r) {
          throw new OperationError(
            `domain ${name} still has ${u} user(s) and ${r} route(s): remove them first`,
          );
        }
        const deleted = await tx.delete(domains).where(eq(domains.name, name)).returning();
        if (deleted.length === 0) throw new OperationError(`unknown domain ${name}`);
      });
      ctx.io.out(`domain ${name} removed\n`);
    },
    async check(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const row = await findDomain(ctx, domainArg(positionals[0]!));
      const resolver = await createResolver(ctx.config.dnsServers);
      const fetchPolicy = policyFetcher({
        resolver,
        extraRoots: readRoots(ctx.config.extraCaFile, "POSTERN_EXTRA_CA_FILE"),
        allowPrivate: ctx.config.allowPrivateDestinations,
        timeoutMs: POLICY_FETCH_TIMEOUT_MS,
      });
      const checks = await checkDomain(resolver, row, ctx.config.hostname, fetchPolicy);
      ctx.io.out(`${formatChecks(checks)}\n`);
      if (checksFailed(checks))
        throw new OperationError(`domain ${row.name}: DNS records missing or wrong (see above)`);
    },
    async dns(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const row = await findDomain(ctx, domainArg(positionals[0]!));
      ctx.io.out(`${toZoneFile(domainRecords(row, ctx.config.hostname))}\n`);
    },
  },
};
