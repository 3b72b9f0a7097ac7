import { randomBytes } from "node:crypto";
import { asc, eq } from "drizzle-orm";
import { routes } from "../db/schema.ts";
import { formatTarget, parseRouteTarget, type RouteTarget } from "../domains/targets.ts";
import { domainOf, normalizeAddress, patternProblem } from "../mail/address.ts";
import { OperationError, parseVerbArgs, type VerbGroup } from "./context.ts";
import { requireLocalDomain } from "./user.ts";

function patternArg(raw: string): string {
  const pattern = normalizeAddress(raw);
  const problem = patternProblem(pattern);
  if (problem)
    throw new OperationError(`invalid pattern "${raw}": ${problem} (expected user@domain or *@domain)`);
  return pattern;
}

export const routeVerbs: VerbGroup = {
  usage: "route add PATTERN TARGET | route ls | route rm PATTERN",
  subverbs: {
    async add(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 2);
      const pattern = patternArg(positionals[0]!);
      let target: RouteTarget;
      try {
        target = parseRouteTarget(positionals[1]!);
      } catch (err) {
        throw new OperationError(`invalid target: ${(err as Error).message}`);
      }
      await requireLocalDomain(ctx.db, domainOf(pattern));
      const secret = target.kind === "webhook" ? randomBytes(32).toString("base64url") : null;
      const inserted = await ctx.db
        .insert(routes)
        .values({ pattern, target: formatTarget(target), secret })
        .onConflictDoNothing()
        .returning();
      if (inserted.length === 0)
        throw new OperationError(`a route for ${pattern} already exists (route rm it first)`);
      ctx.io.out(`route ${pattern} -> ${formatTarget(target)} added\n`);
      if (secret)
        ctx.io.out(`webhook secret (X-Postern-Signature is HMAC-SHA256 of the body with it): ${secret}\n`);
    },
    async ls(ctx, args) {
      parseVerbArgs(args, {}, 0);
      const rows = await ctx.db.select().from(routes).orderBy(asc(routes.pattern));
      for (const r of rows) ctx.io.out(`${r.pattern}\t${r.target}\n`);
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const pattern = patternArg(positionals[0]!);
      const deleted = await ctx.db.delete(routes).where(eq(routes.pattern, pattern)).returning();
      if (deleted.length === 0) throw new OperationError(`no route for ${pattern}`);
      ctx.io.out(`route ${pattern} removed\n`);
    },
  },
};
