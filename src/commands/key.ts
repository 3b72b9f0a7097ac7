import { addKey, findKey, keyNameProblem, listKeys, removeKey } from "../auth/keys.ts";
import { OperationError, parseVerbArgs, UsageError, type VerbGroup } from "./context.ts";
import { limitArg, requireLocalDomain } from "./user.ts";

export const keyVerbs: VerbGroup = {
  usage: "key add NAME --domain D [--domain D2]… [--limit-per-hour N] | key ls | key rm NAME",
  subverbs: {
    async add(ctx, args) {
      const { values, positionals } = parseVerbArgs(
        args,
        { domain: { type: "string", multiple: true }, "limit-per-hour": { type: "string" } },
        1,
      );
      const name = positionals[0]!.toLowerCase();
      const problem = keyNameProblem(name);
      if (problem) throw new OperationError(`invalid key name "${positionals[0]}": ${problem}`);
      if (!values.domain?.length) throw new UsageError("key add: at least one --domain is needed");
      const limitPerHour = limitArg(values["limit-per-hour"]);
      const domains = [...new Set(values.domain.map((d) => d.toLowerCase()))];
      for (const d of domains) await requireLocalDomain(ctx.db, d);
      if (await findKey(ctx.db, name)) throw new OperationError(`key ${name} exists already`);
      const secret = await addKey(ctx.db, { name, domains, limitPerHour });
      ctx.io.out(`key ${name} added for ${domains.join(", ")}\n`);
      ctx.io.out(`key (shown once; SMTP AUTH user ${name}, or Authorization: Bearer): ${secret}\n`);
    },
    async ls(ctx, args) {
      parseVerbArgs(args, {}, 0);
      for (const k of await listKeys(ctx.db)) {
        const limit = k.limitPerHour === null ? "default" : `${k.limitPerHour}/h`;
        ctx.io.out(`${k.name}\t${k.domains.join(",")}\t${limit}\t${k.createdAt.toISOString()}\n`);
      }
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const name = positionals[0]!;
      if (!(await removeKey(ctx.db, name))) throw new OperationError(`no key ${name}`);
      ctx.io.out(`key ${name.toLowerCase()} removed\n`);
    },
  },
};
