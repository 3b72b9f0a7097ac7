import { asc, eq } from "drizzle-orm";
import { generatePassword, hashPassword } from "../auth/passwords.ts";
import type { Db } from "../db/open.ts";
import { domains, users } from "../db/schema.ts";
import { addressProblem, domainOf, normalizeAddress, patternProblem } from "../mail/address.ts";
import {
  type CommandContext,
  OperationError,
  parseVerbArgs,
  readSecretLine,
  UsageError,
  type VerbGroup,
} from "./context.ts";

export function addressArg(raw: string): string {
  const address = normalizeAddress(raw);
  const problem = addressProblem(address);
  if (problem) throw new OperationError(`invalid address "${raw}": ${problem}`);
  return address;
}

export async function requireLocalDomain(db: Db, domain: string): Promise<void> {
  const [row] = await db.select({ name: domains.name }).from(domains).where(eq(domains.name, domain));
  if (!row)
    throw new OperationError(`domain ${domain} is not local (add it with: postern domain add ${domain})`);
}

/** `--limit-per-hour N`: recipients per hour (0: none); undefined when not given (the default applies). */
export function limitArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text))
    throw new UsageError(`--limit-per-hour: expected a whole number, not "${text}"`);
  return Number(text);
}

/** The password from stdin, or a generated one that is printed once. */
async function newPassword(ctx: CommandContext, fromStdin: boolean | undefined): Promise<string> {
  if (fromStdin) return readSecretLine(ctx.io);
  const password = generatePassword();
  ctx.io.out(`password: ${password}\n`);
  return password;
}

export const userVerbs: VerbGroup = {
  usage:
    "user add ADDRESS [--password-stdin] [--may-send-as PATTERN]... [--limit-per-hour N] | user ls | user rm ADDRESS | user passwd ADDRESS [--password-stdin]",
  subverbs: {
    async add(ctx, args) {
      const { values, positionals } = parseVerbArgs(
        args,
        {
          "password-stdin": { type: "boolean" },
          "may-send-as": { type: "string", multiple: true },
          "limit-per-hour": { type: "string" },
        },
        1,
      );
      const address = addressArg(positionals[0]!);
      const limitPerHour = limitArg(values["limit-per-hour"]);
      const maySendAs = (values["may-send-as"] ?? []).map((raw) => {
        const pattern = normalizeAddress(raw);
        const problem = patternProblem(pattern);
        if (problem) throw new OperationError(`invalid --may-send-as "${raw}": ${problem}`);
        return pattern;
      });
      await requireLocalDomain(ctx.db, domainOf(address));
      const [existing] = await ctx.db
        .select({ a: users.address })
        .from(users)
        .where(eq(users.address, address));
      if (existing) throw new OperationError(`user ${address} already exists`);
      const passwordHash = await hashPassword(await newPassword(ctx, values["password-stdin"]));
      const inserted = await ctx.db
        .insert(users)
        .values({ address, passwordHash, maySendAs, limitPerHour })
        .onConflictDoNothing()
        .returning({ address: users.address });
      if (inserted.length === 0) throw new OperationError(`user ${address} already exists`);
      ctx.io.out(`user ${address} added\n`);
    },
    async ls(ctx, args) {
      parseVerbArgs(args, {}, 0);
      const rows = await ctx.db
        .select({ address: users.address, maySendAs: users.maySendAs, limitPerHour: users.limitPerHour })
        .from(users)
        .orderBy(asc(users.address));
      for (const r of rows)
        ctx.io.out(
          `${r.address}\tmay-send-as=${[r.address, ...r.maySendAs].join(",")}${r.limitPerHour === null ? "" : `\tlimit=${r.limitPerHour}/h`}\n`,
        );
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const address = addressArg(positionals[0]!);
      const deleted = await ctx.db.delete(users).where(eq(users.address, address)).returning();
      if (deleted.length === 0) throw new OperationError(`unknown user ${address}`);
      ctx.io.out(`user ${address} removed\n`);
    },
    async passwd(ctx, args) {
      const { values, positionals } = parseVerbArgs(args, { "password-stdin": { type: "boolean" } }, 1);
      const address = addressArg(positionals[0]!);
      const [existing] = await ctx.db
        .select({ a: users.address })
        .from(users)
        .where(eq(users.address, address));
      if (!existing) throw new OperationError(`unknown user ${address}`);
      const passwordHash = await hashPassword(await newPassword(ctx, values["password-stdin"]));
      await ctx.db.update(users).set({ passwordHash }).where(eq(users.address, address));
      ctx.io.out(`password of ${address} changed\n`);
    },
  },
};
