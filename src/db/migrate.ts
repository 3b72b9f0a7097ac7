import { dirname } from "node:path";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import journalPath from "../../migrations/meta/_journal.json" with { type: "file" };
import type { Database } from "./open.ts";

// Importing the journal as a file puts it (and, through the build's extra entry points, the SQL
// files beside it) into the compiled binary; in a checkout it is simply the path on disk.
const migrationsFolder = dirname(dirname(journalPath));

/** Applies every pending migration; a no-op when the schema is current. */
export async function migrate(database: Database): Promise<void> {
  const config = { migrationsFolder, migrationsSchema: "drizzle" };
  if (database.driver.kind === "postgres") await migratePostgres(database.driver.db, config);
  else await migratePglite(database.driver.db, config);
}
