import { eq } from "drizzle-orm";
import { shapes } from "../db/schema.ts";
import { formatShapePattern, parseShapePattern } from "../delivery/shape-pattern.ts";
import { listPauses, listShapes } from "../delivery/shaping.ts";
import { OperationError, parseVerbArgs, UsageError, type VerbGroup } from "./context.ts";

function patternArg(text: string): string {
  const p = parseShapePattern(text);
  if (typeof p === "string") throw new OperationError(`invalid pattern ${p}`);
  return formatShapePattern(p);
}

function countArg(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text) || Number(text) === 0)
    throw new UsageError(`--${name}: expected a whole number above 0, not "${text}"`);
  return Number(text);
}

const limit = (n: number | null, unit: string) => (n === null ? "-" : `${n}${unit}`);

export const shapeVerbs: VerbGroup = {
  usage: "shape add PATTERN [--connections N] [--per-minute N] [--per-hour N] | shape ls | shape rm PATTERN",
  subverbs: {
    async add(ctx, args) {
      const { values, positionals } = parseVerbArgs(
        args,
        { connections: { type: "string" }, "per-minute": { type: "string" }, "per-hour": { type: "string" } },
        1,
      );
      const pattern = patternArg(positionals[0]!);
      const row = {
        connections: countArg("connections", values.connections) ?? null,
        perMinute: countArg("per-minute", values["per-minute"]) ?? null,
        perHour: countArg("per-hour", values["per-hour"]) ?? null,
      };
      if (row.connections === null && row.perMinute === null && row.perHour === null)
        throw new UsageError("shape add: give at least one of --connections, --per-minute, --per-hour");
      await ctx.db
        .insert(shapes)
        .values({ pattern, ...row })
        .onConflictDoUpdate({ target: shapes.pattern, set: row });
      ctx.io.out(`shape ${pattern}: ${describe(row)}\n`);
    },
    async ls(ctx, args) {
      parseVerbArgs(args, {}, 0);
      for (const s of await listShapes(ctx.db)) ctx.io.out(`${s.pattern}\t${describe(s)}\n`);
      const now = Date.now();
      for (const p of await listPauses(ctx.db)) {
        if (p.pausedUntil.getTime() > now)
          ctx.io.out(`${p.key}\tpaused until ${p.pausedUntil.toISOString()} because ${p.reason}\n`);
      }
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const pattern = patternArg(positionals[0]!);
      const gone = await ctx.db.delete(shapes).where(eq(shapes.pattern, pattern)).returning();
      if (gone.length === 0) throw new OperationError(`no shape ${pattern}`);
      ctx.io.out(`shape ${pattern} removed\n`);
    },
  },
};

function describe(s: {
  connections: number | null;
  perMinute: number | null;
  perHour: number | null;
}): string {
  return `connections ${limit(s.connections, "")}, per minute ${limit(s.perMinute, "")}, per hour ${limit(s.perHour, "")}`;
}
