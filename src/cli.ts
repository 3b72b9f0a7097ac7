#!/usr/bin/env bun
// `postern <verb>`: one-line errors, exit 1 for a failed operation, 2 for a usage error.
import { existsSync } from "node:fs";
import type { CommandIO } from "./commands/context.ts";
import { checkVerb, readsStdin, runVerb } from "./commands/dispatch.ts";
import { type Config, ConfigError, loadConfig, secretRedactor } from "./config.ts";
import { callControlSocket, controlSocketPath } from "./control/socket.ts";
import { LockHeldError } from "./db/lock.ts";
import { migrate } from "./db/migrate.ts";
import { openDatabase } from "./db/open.ts";
import { guardProcess } from "./guard.ts";
import { createLogger, errorMessage, flushLog, oneLineError } from "./log.ts";
import { startServer } from "./serve.ts";

const USAGE = `usage: postern <verb>
  serve [--unprivileged-ports]        run the gateway (SMTP on 2525/2587/2465 unless set)
  migrate                             apply pending database migrations
  domain add DOMAIN [--selector S]    make DOMAIN local, print its DNS records
  domain ls | rm DOMAIN | dns DOMAIN | check DOMAIN
  user add ADDRESS [--password-stdin] [--may-send-as PATTERN]...
  user ls | rm ADDRESS | passwd ADDRESS [--password-stdin]
  route add PATTERN TARGET            TARGET: mailbox | webhook:URL | relay:[lmtp:]HOST[:PORT] | forward:ADDRESS
  route ls | rm PATTERN
  queue ls [--status S] [--limit N] [--json] | show ID [--json] | retry ID|--all | rm ID
  send --from A --to B [--to C]... < message.eml`;

const processIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  stdin: () => Bun.stdin.text(),
};

function fail(message: string, code: number): never {
  flushLog();
  process.stderr.write(`postern: ${message}\n`);
  process.exit(code);
}

async function serve(config: Config): Promise<void> {
  guardProcess(createLogger(config.logLevel, undefined, secretRedactor(config)));
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopping = false;
  // Handled from the first moment: a signal during the start (migrations, binding) ends the
  // process through process.exit, which writes the log lines still pending.
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server?.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  server = await startServer(config);
}

/** Runs a database verb here, or through the running server when it holds the embedded database. */
async function databaseVerb(config: Config, argv: string[]): Promise<number> {
  let database: Awaited<ReturnType<typeof openDatabase>>;
  try {
    database = await openDatabase(config);
  } catch (err) {
    const socket = controlSocketPath(config.dataDir);
    if (!(err instanceof LockHeldError) || !existsSync(socket)) throw err;
    const stdin = readsStdin(argv) ? await Bun.stdin.text() : "";
    const res = await callControlSocket(socket, { argv, stdin }).catch(() => {
      throw err; // the holder is not (yet) answering: report the lock
    });
    process.stdout.write(res.stdout);
    process.stderr.write(res.stderr);
    return res.code;
  }
  try {
    await migrate(database);
    return await runVerb(argv, database.db, config, processIO);
  } finally {
    await database.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const verb = argv[0];
  if (verb === undefined || verb === "help" || verb === "--help" || verb === "-h") {
    process.stdout.write(`${USAGE}\n`);
    process.exit(verb === undefined ? 2 : 0);
  }
  if (verb === "serve" || verb === "migrate") {
    const allowed = verb === "serve" ? ["--unprivileged-ports"] : [];
    const extra = argv.slice(1).find((a) => !allowed.includes(a));
    if (extra !== undefined) fail(`${verb}: unexpected argument "${extra}"`, 2);
  } else {
    try {
      checkVerb(argv);
    } catch (err) {
      fail(errorMessage(err), 2);
    }
  }
  let config: Config;
  try {
    config = loadConfig({ unprivilegedPorts: verb === "serve" && argv.includes("--unprivileged-ports") });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 1);
    throw err;
  }
  try {
    if (verb === "serve") await serve(config);
    else process.exit(await databaseVerb(config, argv));
  } catch (err) {
    fail(secretRedactor(config)(oneLineError(err)), 1);
  }
}

// The data dir holds DKIM keys, password hashes and mail: nothing we create is for other users.
process.umask(0o077);
await main(Bun.argv.slice(2));
