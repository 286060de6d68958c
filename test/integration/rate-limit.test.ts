/**
 * Per-API-key rate limits (src/api/rateLimit.ts, src/queue/rateLimits.ts) against the real app
 * and Redis: the 429 and its fields, the two budgets, a budget shared by API processes, the
 * exempt routes, and what happens when Redis cannot be asked (the request is let through).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import net from "node:net";
import { createHash } from "node:crypto";
import { createTestContext, TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { uuid } from "../helpers/fixtures.ts";
import { captureLogs, freePort, samples } from "../helpers/metrics.ts";
import { createApiKey, createKeyVerifier } from "../../src/auth/apiKeys.ts";
import { createApp, type App } from "../../src/api/app.ts";
import { createMetrics } from "../../src/metrics/registry.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { RateLimits } from "../../src/queue/rateLimits.ts";
import { SessionStore } from "../../src/dashboard/sessions.ts";

const ENQUEUE = 3;
const READ = 5;
const WINDOW_S = 60;

let ctx: TestContext;
let agentId: string;
const redisClients: Redis[] = [];

beforeAll(async () => {
  ctx = await createTestContext({ rateLimitEnqueue: ENQUEUE, rateLimitRead: READ, rateLimitWindowS: WINDOW_S });
  // Set up with a key of its own: every test below spends the budgets of keys it creates.
  const setup = await createApiKey(ctx.database.db, "setup");
  const root = uuid();
  const as = { headers: { "x-api-key": setup.key } };
  expect((await ctx.request("POST", "taxonomies", { ...as, body: { version: "rl-1", nodes: [{ node_id: root, label: "root" }] } })).status).toBe(201);
  const agent = await ctx.request("POST", "agents/from-taxonomy", { ...as, body: { name: "rate-limited agent", taxonomy_node_ids: [root] } });
  expect(agent.status).toBe(201);
  agentId = agent.body.agent_id;
});
afterAll(async () => {
  for (const r of redisClients) r.disconnect();
  await ctx.close();
});

interface Answer {
  status: number;
  headers: Headers;
  // biome-ignore lint: tests read arbitrary JSON
  body: any;
}

/** One request to `app` (default: the context's) as the holder of `key`. */
async function call(key: string, method: string, path: string, options: { body?: unknown; app?: App; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { "x-api-key": key, ...options.headers };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const url = path.startsWith("/") ? `http://localhost${path}` : `http://localhost/api/v1/${path}`;
  const res = await (options.app ?? ctx.app).handle(
    new Request(url, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) }),
  );
  const text = await res.text();
  const json = res.headers.get("content-type")?.includes("application/json") && text !== "";
  return { status: res.status, headers: res.headers, body: json ? JSON.parse(text) : text };
}

const newKey = async (name: string) => (await createApiKey(ctx.database.db, name)).key;
const refresh = (key: string, app?: App) => call(key, "POST", `agents/${agentId}/coverage/refresh?force=true`, { app });

/** The draft's fields, parsed: `"name";q=1;w=2` -> { name, q: 1, w: 2 }. */
function field(value: string | null): Record<string, string | number> | null {
  if (value === null) return null;
  const [name, ...params] = value.split(";");
  const out: Record<string, string | number> = { name: JSON.parse(name!) };
  for (const p of params) {
    const [k, v] = p.split("=");
    out[k!] = Number(v);
  }
  return out;
}
const limitOf = (a: Answer) => field(a.headers.get("ratelimit"));
const policyOf = (a: Answer) => field(a.headers.get("ratelimit-policy"));

function expectRateLimited(a: Answer, policy: "enqueue" | "read", limit: number) {
  expect(a.status).toBe(429);
  expect(a.headers.get("content-type")).toContain("application/json");
  expect(a.headers.get("x-request-id")).toBeTruthy();
  expect(a.headers.get("cache-control")).toBe("no-store");
  expect(Object.keys(a.body)).toEqual(["error"]);
  expect(a.body.error.code).toBe("rate_limited");
  expect(a.body.error.message).toContain(`${limit} ${policy} requests per ${WINDOW_S} s`);
  const retryAfter = Number(a.headers.get("retry-after"));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(WINDOW_S);
  expect(a.body.error.details).toEqual({ policy, limit, window_s: WINDOW_S, retry_after_s: retryAfter });
  expect(policyOf(a)).toEqual({ name: policy, q: limit, w: WINDOW_S });
  // Retry-After is never earlier than the reset the RateLimit field announces.
  expect(limitOf(a)).toEqual({ name: policy, r: 0, t: retryAfter });
}

const taskCount = async () => (await ctx.database.sql<{ n: number }[]>`select count(*)::int as n from background_tasks`)[0]!.n;

describe("a key over its budget", () => {
  test("gets 429 rate_limited in the error shape, with Retry-After and the RateLimit fields; another key is unaffected", async () => {
    const [spender, bystander] = [await newKey("spender"), await newKey("bystander")];
    const before = await taskCount();
    for (let i = 1; i <= ENQUEUE; i++) {
      const ok = await refresh(spender);
      expect(ok.status).toBe(202);
      expect(policyOf(ok)).toEqual({ name: "enqueue", q: ENQUEUE, w: WINDOW_S });
      const rl = limitOf(ok)!;
      expect(rl.name).toBe("enqueue");
      expect(rl.r).toBe(ENQUEUE - i);
      expect(rl.t).toBeGreaterThanOrEqual(1);
      expect(rl.t).toBeLessThanOrEqual(WINDOW_S);
    }
    const refused = await refresh(spender);
    expectRateLimited(refused, "enqueue", ENQUEUE);
    // Refused before the handler: no task was written for it.
    expect(await taskCount()).toBe(before + ENQUEUE);
    // Still refused (now from this process's memory, without asking Redis).
    expectRateLimited(await refresh(spender), "enqueue", ENQUEUE);

    const other = await refresh(bystander);
    expect(other.status).toBe(202);
    expect(limitOf(other)).toMatchObject({ name: "enqueue", r: ENQUEUE - 1 });
  });

  test("the static key of AGENTQ_API_KEYS is limited too", async () => {
    for (let i = 0; i < READ; i++) expect((await call(TEST_API_KEY, "GET", "agents")).status).toBe(200);
    expectRateLimited(await call(TEST_API_KEY, "GET", "agents"), "read", READ);
  });

  test("every task-creating route spends the enqueue budget: refresh, bulk refresh, retry, redrive", async () => {
    const key = await newKey("enqueuer");
    const pending = (await refresh(key)).body.task_id as string;
    const bulk = await call(key, "POST", "coverage/refresh", { body: { agent_ids: [agentId] } });
    expect(bulk.status).toBe(202);
    expect(limitOf(bulk)).toMatchObject({ name: "enqueue", r: ENQUEUE - 2 });
    // A retry of a pending task is a 409, and counts all the same: the budget is spent on arrival.
    const retry = await call(key, "POST", `tasks/${pending}/retry`);
    expect(retry.status).toBe(409);
    expect(limitOf(retry)).toMatchObject({ name: "enqueue", r: 0 });
    expectRateLimited(await call(key, "POST", "tasks/retry", { body: { status: ["failed"] } }), "enqueue", ENQUEUE);
  });

  test("a dashboard session spends the budget of the key it was opened with", async () => {
    const created = await createApiKey(ctx.database.db, "dashboard user");
    const sessions = new SessionStore(ctx.redis, queueKeys(ctx.config.redisPrefix), 60_000);
    const { token } = await sessions.create({ kind: "stored", keyId: created.keyId });
    for (let i = 1; i <= 2; i++) expect(limitOf(await call(created.key, "GET", "agents"))).toMatchObject({ r: READ - i });
    const bySession = await ctx.app.handle(new Request("http://localhost/api/v1/agents", { headers: { cookie: `agentq_session=${token}` } }));
    expect(bySession.status).toBe(200);
    expect(field(bySession.headers.get("ratelimit"))).toMatchObject({ name: "read", r: READ - 3 });
  });
});

describe("budgets", () => {
  test("read and enqueue budgets are separate: a key that spent one still has the other; other writes are reads", async () => {
    const key = await newKey("separate");
    for (let i = 0; i < ENQUEUE; i++) expect((await refresh(key)).status).toBe(202);
    expectRateLimited(await refresh(key), "enqueue", ENQUEUE);
    const read = await call(key, "GET", `agents/${agentId}`);
    expect(read.status).toBe(200);
    expect(policyOf(read)).toEqual({ name: "read", q: READ, w: WINDOW_S });
    expect(limitOf(read)).toMatchObject({ name: "read", r: READ - 1 });
    // A cancel is on the read budget: a key out of enqueues can still cancel what it queued.
    const task = (await ctx.request("POST", `agents/${agentId}/coverage/refresh?force=true`, { headers: { "x-api-key": await newKey("queuer") } })).body.task_id;
    const cancel = await call(key, "DELETE", `tasks/${task}`);
    expect(cancel.status).toBe(204);
    expect(limitOf(cancel)).toMatchObject({ name: "read", r: READ - 2 });
    // A write to the corpus too; and an unknown route.
    expect(limitOf(await call(key, "PATCH", `agents/${agentId}`, { body: { name: "renamed" } }))).toMatchObject({ name: "read", r: READ - 3 });
    const unknown = await call(key, "GET", "no-such-route");
    expect(unknown.status).toBe(404);
    expect(limitOf(unknown)).toMatchObject({ name: "read", r: READ - 4 });
    expect((await call(key, "GET", "agents")).status).toBe(200);
    expectRateLimited(await call(key, "GET", "agents"), "read", READ);
  });

  test("two API processes over the same Redis share a key's budget", async () => {
    const redis = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: 1 });
    redisClients.push(redis);
    const second = createApp({
      config: ctx.config,
      database: ctx.database,
      redis,
      logger: ctx.logger,
      keys: createKeyVerifier(ctx.database.db, ctx.config.apiKeys),
    });
    const key = await newKey("shared");
    const apps = [ctx.app, second];
    for (let i = 0; i < READ; i++) {
      const a = await call(key, "GET", "agents", { app: apps[i % 2] });
      expect(a.status).toBe(200);
      expect(limitOf(a)).toMatchObject({ r: READ - 1 - i });
    }
    // The first process never refused this key, so it asks Redis; both refuse it.
    expectRateLimited(await call(key, "GET", "agents", { app: ctx.app }), "read", READ);
    expectRateLimited(await call(key, "GET", "agents", { app: second }), "read", READ);
  });

  test("counters are named by key id or key hash, never by the key", async () => {
    const created = await createApiKey(ctx.database.db, "named");
    await call(created.key, "GET", "agents");
    await call(TEST_API_KEY, "GET", "agents");
    const names = await ctx.redis.keys(`${ctx.config.redisPrefix}:{coverage}:ratelimit:*`);
    expect(names).toContain(`${ctx.config.redisPrefix}:{coverage}:ratelimit:read:stored:${created.keyId}`);
    const staticHash = createHash("sha256").update(TEST_API_KEY).digest("hex");
    expect(names).toContain(`${ctx.config.redisPrefix}:{coverage}:ratelimit:read:static:${staticHash}`);
    const secret = created.key.split("_").slice(2).join("_");
    for (const name of names) {
      expect(name).not.toContain(secret);
      expect(name).not.toContain(TEST_API_KEY);
    }
    // Each counter expires with its window.
    const ttl = await ctx.redis.pttl(`${ctx.config.redisPrefix}:{coverage}:ratelimit:read:stored:${created.keyId}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(WINDOW_S * 1000);
  });
});

describe("what is not limited", () => {
  test("/healthz, /readyz, /metrics and /swagger: exempt, even for a key that spent its budget", async () => {
    const key = await newKey("prober");
    for (let i = 0; i < READ; i++) await call(key, "GET", "agents");
    expectRateLimited(await call(key, "GET", "agents"), "read", READ);
    for (let i = 0; i < READ * 3; i++)
      for (const path of ["/healthz", "/readyz", "/metrics", "/swagger/json"]) {
        const a = await call(key, "GET", path);
        expect({ path, status: a.status, limit: a.headers.get("ratelimit"), policy: a.headers.get("ratelimit-policy") }).toEqual({
          path,
          status: 200,
          limit: null,
          policy: null,
        });
      }
  });

  test("unauthenticated requests are 401 and spend nothing", async () => {
    const before = await ctx.redis.keys(`${ctx.config.redisPrefix}:{coverage}:ratelimit:*`);
    for (let i = 0; i < READ * 2; i++) {
      const a = await call("not-a-key-0123456789abcdef", "GET", "agents");
      expect(a.status).toBe(401);
      expect(a.headers.get("ratelimit")).toBeNull();
    }
    expect((await ctx.redis.keys(`${ctx.config.redisPrefix}:{coverage}:ratelimit:*`)).sort()).toEqual(before.sort());
  });

  test("a limit of 0 turns its policy off (no fields either); the other one still counts", async () => {
    const off = await createTestContext({ rateLimitEnqueue: 0, rateLimitRead: 2, rateLimitWindowS: WINDOW_S });
    try {
      for (let i = 0; i < ENQUEUE * 2; i++) {
        const a = await off.request("POST", "coverage/refresh", { body: { agent_ids: [uuid()] } });
        expect(a.status).toBe(202);
        expect(a.headers.get("ratelimit")).toBeNull();
        expect(a.headers.get("ratelimit-policy")).toBeNull();
      }
      for (let i = 0; i < 2; i++) expect((await off.request("GET", "agents")).status).toBe(200);
      const refused = await off.request("GET", "agents");
      expect(refused.status).toBe(429);
      expect(refused.body.error.details).toMatchObject({ policy: "read", limit: 2 });
    } finally {
      await off.close();
    }
  });
});

describe("when Redis cannot be asked, requests are let through", () => {
  /** An app like the context's whose rate limiter talks to `redis`; its metrics and logs captured. */
  function appWith(redis: Redis) {
    const logs = captureLogs("info");
    const metrics = createMetrics({}, { processMetrics: false });
    const rateLimits = new RateLimits(redis, queueKeys(ctx.config.redisPrefix), {
      limits: { enqueue: 1, read: 1 },
      windowS: WINDOW_S,
      logger: logs.logger,
      metrics,
    });
    const app = createApp({
      config: ctx.config,
      database: ctx.database,
      redis: ctx.redis,
      logger: logs.logger,
      metrics,
      keys: createKeyVerifier(ctx.database.db, ctx.config.apiKeys),
      rateLimits,
    });
    const errors = async () => {
      const s = samples(await (await app.handle(new Request("http://localhost/metrics"))).text());
      return { enqueue: s.get(`agentq_rate_limit_errors_total{policy="enqueue"}`), read: s.get(`agentq_rate_limit_errors_total{policy="read"}`) };
    };
    const warnings = () => logs.lines.filter((l) => l.msg === "rate limiter cannot reach Redis; requests are let through unchecked");
    return { app, errors, warnings };
  }

  test("Redis unreachable (nothing listens): every request succeeds unchecked, counted, and one warning is logged", async () => {
    // Configured as in production (src/main.ts): retries and an offline queue.
    const down = new Redis(`redis://127.0.0.1:${freePort()}/0`, { maxRetriesPerRequest: 3, enableOfflineQueue: true, enableAutoPipelining: true });
    down.on("error", () => {});
    redisClients.push(down);
    const { app, errors, warnings } = appWith(down);
    expect(await errors()).toEqual({ enqueue: 0, read: 0 });
    const key = await newKey("during outage");
    for (let i = 0; i < 4; i++) {
      const a = await call(key, "GET", "agents", { app });
      expect(a.status).toBe(200);
      expect(a.headers.get("ratelimit")).toBeNull();
      expect(a.headers.get("ratelimit-policy")).toBeNull();
    }
    // background=false computes at once (PostgreSQL only): the enqueue policy fails open too.
    for (let i = 0; i < 2; i++) expect((await call(key, "POST", `agents/${agentId}/coverage/refresh?background=false`, { app })).status).toBe(200);
    expect(await errors()).toEqual({ enqueue: 2, read: 4 });
    const logged = warnings();
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, policy: "read", requests_unchecked: 1 });
  }, 15_000);

  test("Redis that accepts and never answers: each request waits at most the limiter's timeout, then succeeds", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as net.AddressInfo).port;
    const hung = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 3, enableOfflineQueue: true, enableAutoPipelining: true });
    hung.on("error", () => {});
    redisClients.push(hung);
    try {
      await new Promise<void>((resolve) => (sockets.length > 0 ? resolve() : silent.once("connection", () => resolve())));
      const { app, errors, warnings } = appWith(hung);
      const key = await newKey("hung redis");
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const a = await call(key, "GET", "agents", { app });
        const elapsed = performance.now() - started;
        expect(a.status).toBe(200);
        expect(a.headers.get("ratelimit")).toBeNull();
        // RATE_LIMIT_TIMEOUT_MS is 100 ms; the rest is the request itself on a shared machine.
        expect(elapsed).toBeLessThan(1000);
      }
      expect(await errors()).toEqual({ enqueue: 0, read: 3 });
      expect(warnings()).toHaveLength(1);
      expect(String(warnings()[0]!.err)).toContain("timed out");
    } finally {
      hung.disconnect();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  }, 15_000);
});
