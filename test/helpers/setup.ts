// Preloaded by bun test (bunfig.toml): hooks here run once around the whole run.
import { afterAll } from "bun:test";
import { removeTempDirs } from "./cli.ts";
import { stopTestCluster } from "./pg.ts";

afterAll(() => {
  stopTestCluster();
  removeTempDirs();
});

// An interrupted run (Ctrl-C, a timeout's SIGTERM) skips afterAll: stop the cluster here too.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    stopTestCluster();
    process.exit(130);
  });
}
