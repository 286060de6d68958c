/**
 * `bun run keys create <name>` prints a new key once; `keys list`; `keys revoke <key id|name>`.
 */
import { loadConfig } from "../config.ts";
import { prepareDatabase } from "../db/migrate.ts";
import { openDatabase } from "../db/client.ts";
import { createApiKey, listApiKeys, revokeApiKey } from "../auth/apiKeys.ts";
import { runCli } from "./run.ts";

const USAGE = "usage: bun run keys create <name> | keys list | keys revoke <key id or name>";

await runCli(async () => {
  const [command, arg] = process.argv.slice(2);
  const config = loadConfig();
  await prepareDatabase(config.databaseUrl);
  const database = openDatabase(config.databaseUrl, { max: 1, applicationName: "agentq-keys" });
  try {
    switch (command) {
      case "create": {
        if (!arg || arg.length > 200) throw new Error(USAGE);
        const created = await createApiKey(database.db, arg);
        console.log(`created key ${created.keyId} (${created.name}); it is shown only now:\n${created.key}`);
        break;
      }
      case "list":
        for (const k of await listApiKeys(database.db))
          console.log(`${k.keyId}  ${k.name}  created ${k.createdAt.toISOString()}${k.revokedAt ? `  REVOKED ${k.revokedAt.toISOString()}` : ""}`);
        break;
      case "revoke": {
        if (!arg) throw new Error(USAGE);
        const n = await revokeApiKey(database.db, arg);
        if (n === 0) throw new Error(`no active key matches ${arg}`);
        console.log(`revoked ${n} key${n === 1 ? "" : "s"}`);
        break;
      }
      default:
        throw new Error(USAGE);
    }
  } finally {
    await database.close();
  }
});
