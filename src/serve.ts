// The composition root: settings -> database -> services -> listeners, and the orderly stop.

import { runVerb } from "./commands/dispatch.ts";
import type { Config } from "./config.ts";
import { controlSocketPath, serveControlSocket } from "./control/socket.ts";
import { migrate } from "./db/migrate.ts";
import { openDatabase } from "./db/open.ts";
import { createHttpHandler } from "./http/app.ts";
import { createLogger, errorMessage } from "./log.ts";

export interface RunningServer {
  httpPort: number;
  stop(): Promise<void>;
}

export async function startServer(config: Config): Promise<RunningServer> {
  const log = createLogger(config.logLevel);
  const database = await openDatabase(config);
  try {
    await migrate(database);
  } catch (err) {
    await database.close();
    throw err;
  }
  log.info("database ready", { kind: database.kind });

  const control =
    database.kind === "pglite"
      ? serveControlSocket(controlSocketPath(config.dataDir), async ({ argv, stdin }) => {
          let stdout = "";
          let stderr = "";
          const code = await runVerb(argv, database.db, config, {
            out: (t) => {
              stdout += t;
            },
            err: (t) => {
              stderr += t;
            },
            stdin: async () => stdin,
          });
          log.info("control command", { argv: argv.slice(0, 2), code });
          return { code, stdout, stderr };
        })
      : undefined;

  const http = Bun.serve({
    hostname: config.listen,
    port: config.httpPort,
    fetch: createHttpHandler({ database }),
    error(err) {
      log.error("http handler failed", { error: errorMessage(err) });
      return Response.json({ error: "internal error" }, { status: 500 });
    },
  });
  log.info("http listening", { address: config.listen, port: http.port });

  return {
    httpPort: http.port!,
    async stop() {
      control?.stop();
      await http.stop(true);
      await database.close();
      log.info("stopped");
    },
  };
}
