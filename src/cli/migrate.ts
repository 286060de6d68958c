/** `bun run migrate`: create the database if needed and apply migrations. */
import { loadConfig } from "../config.ts";
import { prepareDatabase } from "../db/migrate.ts";
import { runCli } from "./run.ts";

await runCli(async () => {
  const config = loadConfig();
  await prepareDatabase(config.databaseUrl);
  console.log(`migrations applied to ${new URL(config.databaseUrl).pathname.slice(1)}`);
});
