import { HookSpecError, parseHookSpec } from "../hooks/spec.ts";
import { addHook, hookView, listHooks, removeHook } from "../hooks/store.ts";
import { type CommandContext, OperationError, parseVerbArgs, type VerbGroup } from "./context.ts";
import { requireLocalDomain } from "./user.ts";

export const hookVerbs: VerbGroup = {
  usage: "hook add URL [--events E,E…] [--domain D] | hook ls | hook rm ID",
  subverbs: {
    async add(ctx: CommandContext, args) {
      const { values, positionals } = parseVerbArgs(
        args,
        { events: { type: "string" }, domain: { type: "string" } },
        1,
      );
      let spec: ReturnType<typeof parseHookSpec>;
      try {
        spec = parseHookSpec({
          url: positionals[0]!,
          events: values.events?.split(",").map((e) => e.trim()),
          domain: values.domain,
        });
      } catch (err) {
        if (err instanceof HookSpecError) throw new OperationError(err.message);
        throw err;
      }
      if (spec.domain) await requireLocalDomain(ctx.db, spec.domain);
      const hook = await addHook(ctx.db, spec);
      ctx.io.out(`hook ${hook.id} added: ${hook.url}\n`);
      ctx.io.out(`signing secret (shown once): ${hook.secret}\n`);
    },
    async ls(ctx, args) {
      parseVerbArgs(args, {}, 0);
      for (const h of (await listHooks(ctx.db)).map(hookView)) {
        ctx.io.out(`${h.id}\t${h.url}\t${h.events?.join(",") ?? "*"}\t${h.domain ?? "*"}\n`);
      }
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      const id = Number(positionals[0]);
      if (!Number.isSafeInteger(id) || id < 1) throw new OperationError(`not a hook id: ${positionals[0]}`);
      if (!(await removeHook(ctx.db, id))) throw new OperationError(`no hook ${id}`);
      ctx.io.out(`hook ${id} removed\n`);
    },
  },
};
