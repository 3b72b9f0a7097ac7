// Preloaded by bun test (bunfig.toml): hooks here run once around the whole run.
import { afterAll } from "bun:test";
import { stopTestCluster } from "./pg.ts";

afterAll(() => stopTestCluster());
