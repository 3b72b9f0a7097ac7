// The queue gauges are read from the database at each scrape: when it cannot be read, those
// gauges are NaN in that scrape, the failure is reported, and every other metric is as it was.
import { expect, test } from "bun:test";
import { migrate } from "../../src/db/migrate.ts";
import { openDatabase } from "../../src/db/open.ts";
import { PosternMetrics } from "../../src/metrics/postern.ts";
import { tempDir } from "../helpers/cli.ts";

test("a scrape while the database is gone: the gauges read from it are NaN, the rest stay", async () => {
  const database = await openDatabase({ databaseUrl: undefined, dataDir: tempDir() });
  await migrate(database);
  const failed: string[] = [];
  const metrics = new PosternMetrics({ db: database.db, onCollectError: (name) => failed.push(name) });
  const before = await metrics.render();
  expect(before).toContain('postern_queue_depth{status="queued"} 0');
  expect(before).toContain("postern_queue_oldest_seconds 0");
  await database.close();
  const after = await metrics.render();
  expect(failed.toSorted()).toEqual([
    "postern_destinations_paused",
    "postern_queue_depth",
    "postern_queue_oldest_seconds",
  ]);
  expect(after).toContain("postern_destinations_paused NaN");
  expect(after).toContain('postern_queue_depth{status="queued"} NaN');
  expect(after).toContain('postern_queue_depth{status="deferred"} NaN');
  expect(after).toContain("postern_queue_oldest_seconds NaN");
  expect(after).toContain('postern_smtp_connections_total{port="smtp"} 0');
  expect(after).toContain("postern_database_up 1");
});
