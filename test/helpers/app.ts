/**
 * A real app against a real PostgreSQL (own cloned database) and Redis (own key
 * prefix), driven through `app.handle(new Request(...))`.
 */
import type { RedisClient } from "../../src/queue/redisClient.ts";
import { randomBytes } from "node:crypto";
import { loadConfig, type Config } from "../../src/config.ts";
import { openDatabase, type Database } from "../../src/db/client.ts";
import { createKeyVerifier } from "../../src/auth/apiKeys.ts";
import { createApp, API_PREFIX, type App } from "../../src/api/app.ts";
import { createLogger } from "../../src/logger.ts";
import { createMetrics, type Metrics } from "../../src/metrics/registry.ts";
import { storeSources } from "../../src/metrics/sources.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { KeyRevocations } from "../../src/queue/keyRevocations.ts";
import { openRedis, redisTargetOf } from "../../src/queue/connection.ts";
import { deletePrefixKeys } from "../../src/queue/prefixKeys.ts";
import type { Logger } from "pino";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { leakReport } from "./leaks.ts";

export const TEST_API_KEY = "test-key-0123456789abcdef";
/** A Standard Webhooks secret for tests (base64 of 32 bytes). */
export const TEST_WEBHOOK_SECRET = `whsec_${Buffer.from("agentq-test-webhook-secret-32byt").toString("base64")}`;
export const TEST_REDIS_URL = process.env.AGENTQ_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/0";

export interface TestContext {
  app: App;
  /** The registry the app serves on /metrics; engines started with startTestEngine report to it too. */
  metrics: Metrics;
  logger: Logger;
  config: Config;
  database: Database;
  redis: RedisClient;
  /** The app's API-key revocation bus (as in serveApi): pass it to revokeApiKey. */
  keyRevocations: KeyRevocations;
  testDb: TestDatabase;
  /** Sends a request to the API (path relative to /api/v1 unless it starts with "/" outside it). */
  request(method: string, path: string, options?: RequestOptions): Promise<TestResponse>;
  close(): Promise<void>;
}

export interface RequestOptions {
  body?: unknown;
  /** Raw body text, sent as is (for malformed JSON). */
  rawBody?: string;
  headers?: Record<string, string>;
  /** Send no X-API-Key header. */
  anonymous?: boolean;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  // biome-ignore lint: tests read arbitrary JSON
  body: any;
  text: string;
}

export async function createTestContext(overrides: Partial<Config> = {}, options: { logger?: Logger } = {}): Promise<TestContext> {
  const testDb = await createTestDatabase();
  const config = loadConfig(
    {},
    {
      databaseUrl: testDb.url,
      redisUrl: TEST_REDIS_URL,
      redisPrefix: `agentq-test:${randomBytes(4).toString("hex")}`,
      apiKeys: [TEST_API_KEY],
      webhookSecrets: [TEST_WEBHOOK_SECRET],
      logLevel: "silent",
      // Rate limits off: a test file sends hundreds of requests with one key in seconds.
      // test/integration/rate-limit.test.ts turns them on to test them.
      rateLimitEnqueue: 0,
      rateLimitRead: 0,
      ...overrides,
    },
  );
  const database = openDatabase(config.databaseUrl, { max: 4, applicationName: "agentq-test" });
  const redis = openRedis(redisTargetOf(config), { maxRetriesPerRequest: 1, enableAutoPipelining: true });
  const logger = options.logger ?? createLogger(config.logLevel);
  const metrics = createMetrics(
    storeSources({ redis, keys: queueKeys(config.redisPrefix), database, cancelGraceMs: config.cancelGraceMs }),
    { logger, processMetrics: false },
  );
  // Stored keys verified through the cache, wired as in serveApi (src/main.ts).
  const keyRevocations = new KeyRevocations(redis, queueKeys(config.redisPrefix), logger);
  const keyVerifier = createKeyVerifier(database.db, config.apiKeys, {
    revocations: keyRevocations,
    ttlMs: config.apiKeyCacheTtlMs,
    negativeTtlMs: config.apiKeyNegativeCacheTtlMs,
  });
  await keyRevocations.ready();
  const app = createApp({ config, database, redis, logger, metrics, keys: keyVerifier });

  async function request(method: string, path: string, options: RequestOptions = {}): Promise<TestResponse> {
    const url = path.startsWith("/") ? `http://localhost${path}` : `http://localhost${API_PREFIX}/${path}`;
    const headers: Record<string, string> = { ...(options.anonymous ? {} : { "x-api-key": TEST_API_KEY }) };
    let body: string | undefined;
    if (options.rawBody !== undefined) body = options.rawBody;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers["content-type"] = "application/json";
    Object.assign(headers, options.headers);
    const res = await app.handle(new Request(url, { method, headers, body }));
    // A live event stream (SSE) never ends by itself: its status and headers are the answer.
    if (res.headers.get("content-type")?.startsWith("text/event-stream")) {
      await res.body?.cancel();
      return { status: res.status, headers: res.headers, body: undefined, text: "" };
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  }

  return {
    app,
    metrics,
    logger,
    config,
    database,
    redis,
    keyRevocations,
    testDb,
    request,
    async close() {
      const leaks = leakReport();
      keyVerifier.close();
      keyRevocations.close();
      // On every primary when the context's Redis is a cluster.
      await deletePrefixKeys(redis, queueKeys(config.redisPrefix));
      redis.disconnect();
      await database.close();
      await testDb.drop();
      if (leaks) throw new Error(leaks);
    },
  };
}
