/**
 * Stored API keys are verified from a short-lived in-process cache, and a
 * revoke reaches every API process (Redis pub/sub) within 1 s.
 *
 * PostgreSQL lookups are counted with a Drizzle logger on a Db of our own
 * (every statement the verifier sends goes through it).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { drizzle } from "drizzle-orm/postgres-js";
import { randomBytes, randomUUID } from "node:crypto";
import { createTestContext, TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { nextRevocation } from "../helpers/revocations.ts";
import * as schema from "../../src/db/schema.ts";
import { createApp, type App } from "../../src/api/app.ts";
import { createApiKey, createKeyVerifier, revokeApiKey, RevocationNotPublishedError, type CachedKeyVerifier } from "../../src/auth/apiKeys.ts";
import { KeyRevocations } from "../../src/queue/keyRevocations.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import type { Db } from "../../src/db/client.ts";

let ctx: TestContext;
const opened: { close(): void }[] = [];
const redisClients: Redis[] = [];
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  for (const o of opened.reverse()) o.close();
  for (const r of redisClients) r.disconnect();
  await ctx.close();
});

/** A Db over the test database that counts the statements reading api_keys. */
function countingDb() {
  const counter = { apiKeyQueries: 0, onQuery: undefined as (() => void) | undefined };
  const db = drizzle(ctx.database.sql, {
    schema,
    logger: {
      logQuery(query: string) {
        if (!/from "api_keys"/.test(query)) return;
        counter.apiKeyQueries++;
        counter.onQuery?.();
      },
    },
  }) as unknown as Db;
  return { db, counter };
}

/** Another "API process": its own Redis connections, revocation subscriber, verifier and app, over the same prefix. */
async function apiInstance(options: { db?: Db; ttlMs?: number; negativeTtlMs?: number } = {}) {
  const redis = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: 1 });
  redisClients.push(redis);
  const revocations = new KeyRevocations(redis, queueKeys(ctx.config.redisPrefix));
  const verifier: CachedKeyVerifier = createKeyVerifier(options.db ?? ctx.database.db, ctx.config.apiKeys, {
    revocations,
    ttlMs: options.ttlMs ?? ctx.config.apiKeyCacheTtlMs,
    negativeTtlMs: options.negativeTtlMs ?? ctx.config.apiKeyNegativeCacheTtlMs,
  });
  opened.push(revocations, verifier);
  await revocations.ready();
  const app: App = createApp({ config: ctx.config, database: ctx.database, redis, logger: ctx.logger, keys: verifier });
  const status = async (key: string) => (await app.handle(new Request("http://localhost/api/v1/agents", { headers: { "x-api-key": key } }))).status;
  return { redis, revocations, verifier, app, status };
}

/** What a `keys revoke` process has: a Redis connection to publish on, no cache of its own. */
function cliRevocations() {
  const redis = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: 1 });
  redisClients.push(redis);
  return new KeyRevocations(redis, queueKeys(ctx.config.redisPrefix));
}

/** A well-formed key that was never created. */
const unknownKey = () => `aq_${randomUUID().replaceAll("-", "")}_${randomBytes(32).toString("base64url")}`;

describe("verification from the cache", () => {
  test("a stored key is read from PostgreSQL once, then from the cache (also for concurrent first requests)", async () => {
    const { db, counter } = countingDb();
    const api = await apiInstance({ db });
    const key = await createApiKey(ctx.database.db, "cached");
    // 20 requests at once with a key not seen yet: one lookup between them.
    const first = await Promise.all(Array.from({ length: 20 }, () => api.status(key.key)));
    expect(first).toEqual(Array.from({ length: 20 }, () => 200));
    expect(counter.apiKeyQueries).toBe(1);
    for (let i = 0; i < 10; i++) expect(await api.status(key.key)).toBe(200);
    expect(counter.apiKeyQueries).toBe(1);
    // Static keys never ask PostgreSQL.
    expect(await api.status(TEST_API_KEY)).toBe(200);
    expect(counter.apiKeyQueries).toBe(1);
  });

  test("deleting the row behind the cache's back: still accepted within the TTL, refused after it", async () => {
    const TTL = 400;
    const { db, counter } = countingDb();
    const api = await apiInstance({ db, ttlMs: TTL });
    const key = await createApiKey(ctx.database.db, "deleted behind the cache");
    expect(await api.status(key.key)).toBe(200);
    const verifiedAt = performance.now();
    await ctx.database.sql`delete from api_keys where key_id = ${key.keyId}`;
    expect(await api.status(key.key)).toBe(200); // from the cache: PostgreSQL was not asked
    expect(performance.now() - verifiedAt).toBeLessThan(TTL);
    expect(counter.apiKeyQueries).toBe(1);
    // Past the TTL the entry is gone and PostgreSQL says no. (The TTL is the thing under test: we wait it out.)
    await Bun.sleep(TTL + 50);
    expect(await api.status(key.key)).toBe(401);
    expect(counter.apiKeyQueries).toBe(2);
  });

  test("a refused key is refused from the cache too; a flood of distinct unknown keys is a few batched lookups, not one each", async () => {
    const { db, counter } = countingDb();
    const api = await apiInstance({ db });
    const bad = unknownKey();
    for (let i = 0; i < 10; i++) expect(await api.status(bad)).toBe(401);
    expect(counter.apiKeyQueries).toBe(1);
    // Keys that cannot be stored keys (wrong shape) never reach PostgreSQL.
    for (const junk of ["x".repeat(40), "aq_short", `${TEST_API_KEY}-nope`]) expect(await api.status(junk)).toBe(401);
    expect(counter.apiKeyQueries).toBe(1);
    // 300 distinct well-formed unknown keys at once, plus one real key among them.
    const real = await createApiKey(ctx.database.db, "in the flood");
    const flood = Array.from({ length: 300 }, unknownKey);
    const statuses = await Promise.all([...flood.map((k) => api.status(k)), api.status(real.key)]);
    expect(statuses.slice(0, 300).every((s) => s === 401)).toBe(true);
    expect(statuses[300]).toBe(200);
    // One lookup in flight at a time; the ones that waited go together (at most 500 ids each).
    expect(counter.apiKeyQueries - 1).toBeLessThanOrEqual(3);
  });

  test("a lookup that overlaps a revocation is answered but not cached", async () => {
    const { db, counter } = countingDb();
    const api = await apiInstance({ db });
    const key = await createApiKey(ctx.database.db, "raced");
    // While the lookup is on its way to PostgreSQL, a revocation (of any key) arrives.
    counter.onQuery = () => {
      counter.onQuery = undefined;
      void api.revocations.publish([randomUUID()]);
    };
    expect(await api.status(key.key)).toBe(200);
    expect(await api.status(key.key)).toBe(200);
    expect(counter.apiKeyQueries).toBe(2); // the first answer was not trusted for the cache
    expect(await api.status(key.key)).toBe(200);
    expect(counter.apiKeyQueries).toBe(2);
  });
});

describe("revocation reaches every API process", () => {
  test("revoking through the service function makes a second app instance refuse the key within 1 s", async () => {
    const a = await apiInstance();
    const b = await apiInstance();
    const doomed = await createApiKey(ctx.database.db, "doomed");
    const control = await createApiKey(ctx.database.db, "control");
    for (const api of [a, b]) {
      expect(await api.status(doomed.key)).toBe(200);
      expect(await api.status(control.key)).toBe(200);
    }
    // The control key is revoked in PostgreSQL only, with no message: both caches keep accepting it.
    // That is what the message is for (and what the TTL bounds when Redis is unreachable).
    await ctx.database.sql`update api_keys set revoked_at = now() where key_id = ${control.keyId}`;
    expect(await b.status(control.key)).toBe(200);

    const heardByA = nextRevocation(a.revocations, doomed.keyId);
    const heardByB = nextRevocation(b.revocations, doomed.keyId);
    const started = performance.now();
    expect(await revokeApiKey(ctx.database.db, doomed.keyId, cliRevocations())).toBe(1);
    const [atA, atB] = await Promise.all([heardByA, heardByB]);
    expect(atA - started).toBeLessThan(1000);
    expect(atB - started).toBeLessThan(1000);
    expect(await a.status(doomed.key)).toBe(401);
    expect(await b.status(doomed.key)).toBe(401);
    // Only the revoked key was evicted.
    expect(await b.status(control.key)).toBe(200);
  });

  test("revoking by name publishes every key of that name", async () => {
    const b = await apiInstance();
    const [k1, k2] = [await createApiKey(ctx.database.db, "shared name"), await createApiKey(ctx.database.db, "shared name")];
    expect(await b.status(k1.key)).toBe(200);
    expect(await b.status(k2.key)).toBe(200);
    const heard = Promise.all([nextRevocation(b.revocations, k1.keyId), nextRevocation(b.revocations, k2.keyId)]);
    expect(await revokeApiKey(ctx.database.db, "shared name", cliRevocations())).toBe(2);
    await heard;
    expect(await b.status(k1.key)).toBe(401);
    expect(await b.status(k2.key)).toBe(401);
  });

  test("when the subscriber's connection drops, the cache is emptied once it is subscribed again (messages may have been lost)", async () => {
    const b = await apiInstance();
    const key = await createApiKey(ctx.database.db, "revoked while b was deaf");
    expect(await b.status(key.key)).toBe(200);
    // The revoke's message is lost (as while b's connection is down): revoked in PostgreSQL only.
    await ctx.database.sql`update api_keys set revoked_at = now() where key_id = ${key.keyId}`;
    expect(await b.status(key.key)).toBe(200);
    const resubscribed = new Promise<void>((resolve) => {
      const stop = b.revocations.listen({ revoked() {}, reset: () => (stop(), resolve()) });
    });
    // Kill b's subscriber connection from the server side; ioredis reconnects and we subscribe again.
    const stream = (b.revocations.connection as unknown as { stream: { localAddress: string; localPort: number } }).stream;
    await ctx.redis.client("KILL", "ADDR", `${stream.localAddress}:${stream.localPort}`);
    await resubscribed;
    expect(b.revocations.live).toBe(true);
    expect(await b.status(key.key)).toBe(401);
  });

  test("Redis unreachable at revoke time: the revoke stands, the caller is told, and this process's listeners were told", async () => {
    const a = await apiInstance();
    const key = await createApiKey(ctx.database.db, "revoked without redis");
    expect(await a.status(key.key)).toBe(200);
    const down = new Redis("redis://127.0.0.1:1", { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    down.on("error", () => {});
    redisClients.push(down);
    const bus = new KeyRevocations(down, queueKeys(ctx.config.redisPrefix));
    const heardLocally = new Promise<string[]>((resolve) => bus.listen({ revoked: (ids) => resolve([...ids]), reset() {} }));
    const error = await revokeApiKey(ctx.database.db, key.keyId, bus).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RevocationNotPublishedError);
    expect((error as RevocationNotPublishedError).revoked).toBe(1);
    expect(await heardLocally).toEqual([key.keyId]);
    bus.close();
    const [row] = await ctx.database.sql<{ revoked: boolean }[]>`select revoked_at is not null as revoked from api_keys where key_id = ${key.keyId}`;
    expect(row!.revoked).toBe(true);
  });
});
