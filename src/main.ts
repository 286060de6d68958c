/**
 * Composition root: config -> database (created and migrated) -> Redis -> API
 * and/or supervisor; signal handling lives in src/cli/run.ts. Nothing below this file reads the
 * environment or opens connections on its own.
 */
import type { RedisClient } from "./queue/redisClient.ts";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { openDatabase, type Database } from "./db/client.ts";
import { prepareDatabase } from "./db/migrate.ts";
import { createKeyVerifier } from "./auth/apiKeys.ts";
import { createApp, listenOptions } from "./api/app.ts";
import { createLogger } from "./logger.ts";
import { createMetrics, type Metrics } from "./metrics/registry.ts";
import { storeSources } from "./metrics/sources.ts";
import { queueKeys } from "./queue/keys.ts";
import { KeyRevocations } from "./queue/keyRevocations.ts";
import { waitForRedis } from "./queue/redisWait.ts";
import { describeRedisTarget, openRedis, redisTargetOf } from "./queue/connection.ts";
import { uiAssets } from "./dashboard/uiAssets.ts";

export interface Runtime {
  config: Config;
  logger: Logger;
  database: Database;
  redis: RedisClient;
  /** This process's metrics; served on /metrics by the API and by a standalone supervisor. */
  metrics: Metrics;
  close(): Promise<void>;
}

export async function openRuntime(config: Config, role: string): Promise<Runtime> {
  const logger = createLogger(config.logLevel, { role });
  const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));
  const redisTarget = redisTargetOf(config);
  // Both waited for at once, each up to AGENTQ_STARTUP_WAIT_MS (runCli turns a wait that ran out into exit 69).
  await Promise.all([
    prepareDatabase(config.databaseUrl, {
      waitMs: config.startupWaitMs,
      onRetry: (error, retryInMs) => logger.warn({ reason: reason(error), retry_in_ms: retryInMs }, "PostgreSQL is not answering yet; waiting"),
    }),
    waitForRedis(redisTarget, {
      waitMs: config.startupWaitMs,
      onRetry: (error, retryInMs) =>
        logger.warn({ reason: reason(error), retry_in_ms: retryInMs, redis: describeRedisTarget(redisTarget) }, "Redis is not answering yet; waiting"),
    }),
  ]);
  const database = openDatabase(config.databaseUrl, { applicationName: `agentq-${role}` });
  // Auto-pipelining batches the commands one request issues in the same tick into one round trip.
  const redis = openRedis(redisTarget, { maxRetriesPerRequest: 3, enableOfflineQueue: true, enableAutoPipelining: true });
  redis.on("error", (error) => logger.warn({ err: error }, "redis connection error"));
  return {
    config,
    logger,
    database,
    redis,
    // Scrape-time gauges any process can read (queues from Redis, overdue tasks from PostgreSQL);
    // a supervisor started on this runtime adds its worker gauges.
    metrics: createMetrics(
      storeSources({ redis, keys: queueKeys(config.redisPrefix), database, cancelGraceMs: config.cancelGraceMs }),
      { logger },
    ),
    async close() {
      redis.disconnect();
      // Bounded (a dead PostgreSQL would hold the pool's end for its whole timeout): the server drops our sessions.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([database.close().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, 1_000)))]);
      clearTimeout(timer);
    },
  };
}

export function serveApi(runtime: Runtime, isDraining: () => boolean) {
  const { config, logger, database, redis, metrics } = runtime;
  // Stored keys are verified from a short-lived cache; revokes anywhere evict them at once (Redis pub/sub).
  const revocations = new KeyRevocations(redis, queueKeys(config.redisPrefix), logger);
  const keys = createKeyVerifier(database.db, config.apiKeys, {
    revocations,
    ttlMs: config.apiKeyCacheTtlMs,
    negativeTtlMs: config.apiKeyNegativeCacheTtlMs,
  });
  const app = createApp({ config, logger, database, redis, metrics, keys, isDraining });
  app.onStop(() => {
    keys.close();
    revocations.close();
  });
  // Bun's body limit is out of the way, so every 413 is ours, with the error shape (listenOptions).
  app.listen(listenOptions(config));
  // The pages' assets (Swagger UI's files, the dashboard's bundle) are made now, not at the first visit.
  uiAssets().then(
    () => logger.debug("ui assets ready"),
    (error) => logger.error({ err: error }, "the /swagger and /dashboard assets do not build; those pages answer 500"),
  );
  logger.info({ host: config.host, port: app.server?.port }, "api listening; docs at /swagger");
  return app;
}
