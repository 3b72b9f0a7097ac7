import { secretRedactor } from "../config.ts";
import { DELIVERY_STATUSES, isDeliveryStatus } from "../db/schema.ts";
import { Router } from "../delivery/route.ts";
import { Directory } from "../domains/directory.ts";
import { createLogger } from "../log.ts";
import { Enqueuer } from "../queue/enqueue.ts";
import { listQueue, removeMessage, retryNow, showMessage } from "../queue/inspect.ts";
import { Intake } from "../queue/intake.ts";
import { SubmitError, submitMessage } from "../queue/submit.ts";
import { suppressedText, suppressionRefusing } from "../queue/suppressions.ts";
import {
  type CommandContext,
  OperationError,
  parseVerbArgs,
  UsageError,
  type Verb,
  type VerbGroup,
} from "./context.ts";

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "))
    .join("\n");
}

async function requireMessage(ctx: CommandContext, id: string) {
  const m = await showMessage(ctx.db, id);
  if (!m) throw new OperationError(`no message ${id} in the queue`);
  return m;
}

export const queueVerbs: VerbGroup = {
  usage: `queue ls [--status ${DELIVERY_STATUSES.join("|")}] [--limit N] [--json] | queue show ID [--json] | queue retry ID|--all | queue rm ID`,
  subverbs: {
    async ls(ctx, args) {
      const { values } = parseVerbArgs(
        args,
        { status: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" } },
        0,
      );
      if (values.status !== undefined && !isDeliveryStatus(values.status)) {
        throw new UsageError(`--status must be one of ${DELIVERY_STATUSES.join(", ")}`);
      }
      const limit = Number(values.limit ?? 100);
      if (!Number.isInteger(limit) || limit < 1)
        throw new UsageError("--limit must be a whole number above 0");
      const page = await listQueue(ctx.db, { status: values.status, limit });
      if (values.json) {
        ctx.io.out(`${JSON.stringify(page.entries, null, 2)}\n`);
        return;
      }
      if (page.entries.length === 0) {
        ctx.io.out("the queue is empty\n");
        return;
      }
      const rows = [["ID", "RECIPIENT", "STATUS", "TRIES", "NEXT TRY", "LAST REPLY"]];
      for (const e of page.entries) {
        rows.push([
          e.messageId,
          e.rcpt,
          e.status,
          String(e.attempts),
          e.nextAttemptAt ?? "-",
          e.lastReply ?? "-",
        ]);
      }
      ctx.io.out(`${table(rows)}\n`);
      if (page.nextCursor !== undefined) ctx.io.out(`(more: raise --limit above ${limit})\n`);
    },
    async show(ctx, args) {
      const { values, positionals } = parseVerbArgs(args, { json: { type: "boolean" } }, 1);
      const m = await requireMessage(ctx, positionals[0]!);
      if (values.json) {
        ctx.io.out(`${JSON.stringify(m, null, 2)}\n`);
        return;
      }
      const lines = [
        `message ${m.id}  received ${m.receivedAt}  ${m.direction}  ${m.size} bytes`,
        `from <${m.from}>${m.clientIp ? `  client [${m.clientIp}] helo ${m.helo}` : ""}${m.authUser ? `  user ${m.authUser}` : ""}`,
        `subject ${m.subject ?? "-"}`,
      ];
      for (const r of m.recipients) {
        lines.push("", `to <${r.rcpt}>  via ${r.target}  ${r.status}  after ${r.attempts} tries`);
        if (r.nextAttemptAt) lines.push(`  next try ${r.nextAttemptAt}`);
        for (const h of r.history) {
          lines.push(
            `  ${h.at}  ${h.outcome.padEnd(9)}  ${h.host ?? "-"}  ${h.durationMs} ms  ${h.reply ?? ""}`,
          );
        }
      }
      ctx.io.out(`${lines.join("\n")}\n`);
    },
    async retry(ctx, args) {
      // `queue retry --all` takes no ID, `queue retry ID` one.
      const { values, positionals } = parseVerbArgs(
        args,
        { all: { type: "boolean" } },
        args.includes("--all") ? 0 : 1,
      );
      if (values.all) {
        ctx.io.out(`${await retryNow(ctx.db, "all")} deliveries due now\n`);
        return;
      }
      const id = positionals[0];
      if (!id) throw new UsageError("queue retry needs an ID or --all");
      await requireMessage(ctx, id);
      ctx.io.out(`${await retryNow(ctx.db, id)} deliveries of ${id} due now\n`);
    },
    async rm(ctx, args) {
      const { positionals } = parseVerbArgs(args, {}, 1);
      if (!(await removeMessage(ctx.db, positionals[0]!))) {
        throw new OperationError(`no message ${positionals[0]} in the queue`);
      }
      ctx.io.out(`message ${positionals[0]} removed\n`);
    },
  },
};

export const send: Verb = async (ctx, args) => {
  const { values } = parseVerbArgs(
    args,
    { from: { type: "string" }, to: { type: "string", multiple: true } },
    0,
  );
  if (!values.from || !values.to?.length)
    throw new UsageError("usage: postern send --from A --to B [--to C] < message.eml");
  const raw = new TextEncoder().encode((await ctx.io.stdin()).replace(/\r?\n/g, "\r\n"));
  const log = createLogger(ctx.config.logLevel, undefined, secretRedactor(ctx.config));
  const directory = new Directory(ctx.db);
  try {
    const { id, suppressed } = await submitMessage(
      {
        directory,
        // Injected mail is a submission: no inbound checks, no recipient probes.
        router: new Router({
          directory,
          resolver: undefined,
          verifier: undefined,
          suppressed: async (mailFrom, address) => {
            const found = await suppressionRefusing(ctx.db, mailFrom, address);
            return found && suppressedText(address, found);
          },
        }),
        intake: new Intake({
          directory,
          enqueuer: new Enqueuer(ctx.db, log),
          hostname: ctx.config.hostname,
          resolver: undefined,
          dmarcPolicy: ctx.config.dmarcPolicy,
        }),
        hostname: ctx.config.hostname,
        maxMessageBytes: ctx.config.maxMessageBytes,
      },
      { from: values.from, to: values.to, raw, via: "cli", field: "message" },
    );
    ctx.io.out(`queued as ${id}\n`);
    for (const address of suppressed) ctx.io.out(`not sent to ${address}: suppressed\n`);
  } catch (err) {
    if (err instanceof SubmitError) throw new OperationError(err.message);
    throw err;
  }
};
