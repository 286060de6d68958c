/**
 * `bun run keys create <name>` prints a new key once; `keys list`; `keys revoke <key id|name>`.
 * A revoke is published on Redis so every API process drops the key from its cache at once.
 */
import { loadConfig, type Config } from "../config.ts";
import { prepareDatabase } from "../db/migrate.ts";
import { openDatabase, type Db } from "../db/client.ts";
import { createApiKey, listApiKeys, revokeApiKey, RevocationNotPublishedError } from "../auth/apiKeys.ts";
import { KeyRevocations } from "../queue/keyRevocations.ts";
import { queueKeys } from "../queue/keys.ts";
import { openRedis, redisTargetOf } from "../queue/connection.ts";
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
        const n = await revoke(config, database.db, arg);
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

/** Revokes in PostgreSQL, then tells the API processes; Redis being down only delays the effect (a warning). */
async function revoke(config: Config, db: Db, idOrName: string): Promise<number> {
  // Fail fast when Redis is down: the revoke is committed either way.
  const redis = openRedis(redisTargetOf(config), { maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: (n) => (n > 1 ? null : 100) });
  redis.on("error", () => {}); // reported once, below
  try {
    return await revokeApiKey(db, idOrName, new KeyRevocations(redis, queueKeys(config.redisPrefix)));
  } catch (error) {
    if (!(error instanceof RevocationNotPublishedError)) throw error;
    console.error(`warning: ${error.message}`);
    return error.revoked;
  } finally {
    redis.disconnect();
  }
}
