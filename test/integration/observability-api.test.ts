/**
 * The API side of observability, through the real app (app.handle), PostgreSQL and Redis:
 * HTTP metrics labelled by route template, request ids and request logs, /metrics when Redis
 * and PostgreSQL are down, the background-refresh feature flag, and the standalone
 * supervisor's metrics server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { sql } from "drizzle-orm";
import { createTestContext, TEST_API_KEY, type RequestOptions, type TestContext, type TestResponse } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { captureLogs, families, freePort, samples, type CapturedLogs } from "../helpers/metrics.ts";
import { createApp } from "../../src/api/app.ts";
import { createKeyVerifier } from "../../src/auth/apiKeys.ts";
import { openDatabase } from "../../src/db/client.ts";
import { createMetrics } from "../../src/metrics/registry.ts";
import { storeSources } from "../../src/metrics/sources.ts";
import { serveMetrics } from "../../src/metrics/server.ts";
import { queueKeys } from "../../src/queue/keys.ts";

let ctx: TestContext;
let logs: CapturedLogs;
let agentId: string;

beforeAll(async () => {
  logs = captureLogs("debug");
  ctx = await createTestContext({}, { logger: logs.logger });
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
  agentId = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
});
afterAll(() => ctx.close());

/**
 * Elysia runs afterResponse hooks (request log line, HTTP metrics) after the response is
 * handed back; this sends a request with a known id and waits for its log line.
 */
async function send(c: TestContext, captured: CapturedLogs, method: string, path: string, options: RequestOptions = {}): Promise<TestResponse> {
  const id = options.headers?.["x-request-id"] ?? crypto.randomUUID();
  const res = await c.request(method, path, { ...options, headers: { ...options.headers, "x-request-id": id } });
  const expected = res.headers.get("x-request-id")!;
  await eventually(async () => (captured.lines.some((l) => l.msg === "request" && l.request_id === expected) ? true : undefined), 5000, `request log of ${id}`);
  return res;
}
const req = (method: string, path: string, options: RequestOptions = {}) => send(ctx, logs, method, path, options);

const httpSamples = async () => {
  const all = samples((await req("GET", "/metrics", { anonymous: true })).text);
  return new Map([...all].filter(([k]) => k.startsWith("agentq_http_requests_total{")));
};
const series = (method: string, route: string, status: number) =>
  `agentq_http_requests_total{method="${method}",route="${route}",status="${status}"}`;

describe("HTTP metrics", () => {
  test("requests are labelled by route template, never by the raw path", async () => {
    const before = await httpSamples();
    const missing = uuid();
    const refresh = await req("POST", `agents/${agentId}/coverage/refresh?force=true`, { body: { priority: "low" } });
    expect(refresh.status).toBe(202);
    expect((await req("GET", `agents/${agentId}`)).status).toBe(200);
    expect((await req("GET", `agents/${missing}`)).status).toBe(404);
    expect((await req("GET", `agents/not-a-uuid`)).status).toBe(400);
    expect((await req("DELETE", `tasks/${refresh.body.task_id}`)).status).toBe(204);
    // Refused before routing (no key): matched against the templates.
    expect((await req("GET", `agents/${missing}`, { anonymous: true })).status).toBe(401);
    // No such route: one fixed label however many paths are probed.
    expect((await req("GET", `/wp-admin/${uuid()}`, { anonymous: true })).status).toBe(404);
    expect((await req("GET", `/.env`, { anonymous: true })).status).toBe(404);
    expect((await req("GET", `nothing/${uuid()}`)).status).toBe(404);
    expect((await req("PROPFIND", "/healthz", { anonymous: true })).status).toBe(404);
    expect((await req("GET", "/healthz", { anonymous: true })).status).toBe(200);

    const after = await httpSamples();
    const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta(series("POST", "/api/v1/agents/:agent_id/coverage/refresh", 202))).toBe(1);
    expect(delta(series("GET", "/api/v1/agents/:agent_id", 200))).toBe(1);
    expect(delta(series("GET", "/api/v1/agents/:agent_id", 404))).toBe(1);
    expect(delta(series("GET", "/api/v1/agents/:agent_id", 400))).toBe(1);
    expect(delta(series("GET", "/api/v1/agents/:agent_id", 401))).toBe(1);
    expect(delta(series("DELETE", "/api/v1/tasks/:task_id", 204))).toBe(1);
    expect(delta(series("GET", "unmatched", 404))).toBe(3);
    expect(delta(series("OTHER", "unmatched", 404))).toBe(1);
    expect(delta(series("GET", "/healthz", 200))).toBe(1);
    // The scrapes themselves are requests too.
    expect(after.get(series("GET", "/metrics", 200))).toBeGreaterThanOrEqual(1);
    // No id, uuid or probed path ever becomes a label value.
    for (const key of after.keys()) {
      expect(key).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/);
      expect(key).not.toContain("wp-admin");
      expect(key).not.toContain(".env");
    }
    // Latency is observed with the same labels.
    const text = (await req("GET", "/metrics", { anonymous: true })).text;
    expect(samples(text).get(`agentq_http_request_duration_seconds_count{method="GET",route="/api/v1/agents/:agent_id",status="200"}`)).toBeGreaterThanOrEqual(1);
  });

  test("/metrics needs no API key and is documented in the OpenAPI spec", async () => {
    const res = await req("GET", "/metrics", { anonymous: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(families(res.text).has("agentq_tasks_enqueued_total")).toBe(true);
    const spec = (await req("GET", "/swagger/json", { anonymous: true })).body;
    expect(spec.paths["/metrics"].get.security).toEqual([]);
    const refresh = spec.paths["/api/v1/agents/{agent_id}/coverage/refresh"].post;
    expect(Object.keys(refresh.responses)).toContain("503");
    expect(refresh.description).toContain("background_refresh_disabled");
  });
});

describe("request ids and request logs", () => {
  test("a sane incoming X-Request-Id is kept and returned; otherwise one is generated", async () => {
    const kept = await req("GET", `agents/${agentId}`, { headers: { "x-request-id": "req-abc.123" } });
    expect(kept.headers.get("x-request-id")).toBe("req-abc.123");
    const replaced = await req("GET", `agents/${agentId}`, { headers: { "x-request-id": "bad id with spaces" } });
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    // No header at all: the server makes one up (and logs it).
    const generated = await ctx.request("GET", `agents/${agentId}`);
    const id = generated.headers.get("x-request-id")!;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await eventually(async () => (logs.lines.some((l) => l.request_id === id) ? true : undefined), 5000);
    expect(id).not.toBe(replaced.headers.get("x-request-id"));
    // Errors carry one too, including those answered before routing.
    expect((await req("GET", `agents/${agentId}`, { anonymous: true, headers: { "x-request-id": "r-401" } })).headers.get("x-request-id")).toBe("r-401");
    expect((await req("GET", "/nope", { anonymous: true, headers: { "x-request-id": "r-404" } })).headers.get("x-request-id")).toBe("r-404");

    const line = logs.lines.find((l) => l.msg === "request" && l.request_id === id);
    expect(line).toMatchObject({ method: "GET", route: "/api/v1/agents/:agent_id", path: `/api/v1/agents/${agentId}`, status: 200, level: 30 });
    expect(line!.duration_ms).toBeGreaterThanOrEqual(0);
    expect(logs.lines.find((l) => l.msg === "request" && l.request_id === "r-404")).toMatchObject({ route: "unmatched", status: 404 });
    // Scrapes and probes are logged at debug, not info.
    await req("GET", "/healthz", { anonymous: true, headers: { "x-request-id": "probe-1" } });
    expect(logs.lines.find((l) => l.request_id === "probe-1")).toMatchObject({ level: 20 });
  });

  test("the task_enqueued line carries the id of the request that enqueued the task", async () => {
    const res = await req("POST", `agents/${agentId}/coverage/refresh?force=true`, { headers: { "x-request-id": "enqueue-req-1" } });
    expect(res.status).toBe(202);
    const taskId = (res.body as { task_id: string }).task_id;
    expect(logs.lines.find((l) => l.event === "task_enqueued" && l.task_id === taskId)).toMatchObject({ request_id: "enqueue-req-1", agent_id: agentId });
  });
});

describe("when Redis and PostgreSQL are down", () => {
  test("/metrics still answers 200, without the gauges it cannot read; errors are logged with the request id", async () => {
    const down = captureLogs("info");
    // Real clients, configured as in production (src/main.ts), pointed at ports nothing listens on.
    const redis = new Redis(`redis://127.0.0.1:${freePort()}/0`, { maxRetriesPerRequest: 3, enableOfflineQueue: true, enableAutoPipelining: true });
    redis.on("error", () => {});
    const database = openDatabase(`postgres://root@127.0.0.1:${freePort()}/agentq`, { max: 1 });
    const config = { ...ctx.config, apiKeys: [TEST_API_KEY] };
    const metrics = createMetrics(storeSources({ redis, keys: queueKeys(config.redisPrefix), database, cancelGraceMs: 100 }), { logger: down.logger });
    metrics.tasksEnqueued.inc({ priority: "high" });
    const app = createApp({ config, database, redis, logger: down.logger, metrics, keys: createKeyVerifier(database.db, config.apiKeys) });
    try {
      const res = await app.handle(new Request("http://localhost/metrics"));
      expect(res.status).toBe(200);
      const text = await res.text();
      const s = samples(text);
      expect(s.get(`agentq_tasks_enqueued_total{priority="high"}`)).toBe(1);
      expect([...s.keys()].some((k) => k.startsWith("agentq_queue_depth"))).toBe(false);
      expect(s.has("agentq_oldest_pending_task_age_seconds")).toBe(false);
      expect(s.has("agentq_tasks_overdue")).toBe(false);
      expect(s.has("agentq_tasks_held_by_agent_limit")).toBe(false);
      expect(s.get("process_resident_memory_bytes")).toBeGreaterThan(0);
      const skipped = down.lines.filter((l) => l.msg === "metric collection failed; gauge skipped").map((l) => l.metric);
      expect(skipped.sort()).toEqual([
        "agentq_oldest_pending_task_age_seconds",
        "agentq_queue_depth",
        "agentq_tasks_held_by_agent_limit",
        "agentq_tasks_overdue",
      ]);

      const failed = await app.handle(new Request("http://localhost/api/v1/agents", { headers: { "x-api-key": TEST_API_KEY, "x-request-id": "down-1" } }));
      await eventually(async () => (down.lines.some((l) => l.msg === "request" && l.request_id === "down-1") ? true : undefined), 5000);
      expect(failed.status).toBe(503);
      expect(((await failed.json()) as { error: { code: string } }).error.code).toBe("dependency_unavailable");
      expect(failed.headers.get("x-request-id")).toBe("down-1");
      expect(down.lines.find((l) => l.msg === "request failed")).toMatchObject({ request_id: "down-1", level: 50 });
      expect(down.lines.find((l) => l.msg === "request" && l.request_id === "down-1")).toMatchObject({ status: 503, route: "/api/v1/agents" });
    } finally {
      redis.disconnect();
      await database.sql.end({ timeout: 0 });
    }
  }, 20_000);
});

describe("background refresh feature flag", () => {
  let off: TestContext;
  let offAgent: string;
  beforeAll(async () => {
    off = await createTestContext({ backgroundRefreshEnabled: false });
    const root = uuid();
    await postTaxonomy(off, "1", [{ node_id: root, label: "root" }]);
    offAgent = (await postAgent(off, { taxonomy_node_ids: [root] })).agent_id;
  });
  afterAll(() => off.close());

  test("background=true answers 503 background_refresh_disabled and records nothing", async () => {
    for (const path of [`agents/${offAgent}/coverage/refresh`, `agents/${offAgent}/coverage/refresh?background=true&force=true`]) {
      const res = await off.request("POST", path, { body: { priority: "high" } });
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("background_refresh_disabled");
      expect(res.body.error.message).toContain("AGENTQ_BACKGROUND_REFRESH_ENABLED");
    }
    const [row] = await off.database.db.execute<{ n: number }>(sql`select count(*)::int as n from background_tasks`);
    expect(row!.n).toBe(0);
    expect(await off.redis.keys(`${off.config.redisPrefix}:*`)).toEqual([]);
    const s = samples((await off.request("GET", "/metrics", { anonymous: true })).text);
    for (const p of ["high", "medium", "low"]) expect(s.get(`agentq_tasks_enqueued_total{priority="${p}"}`)).toBe(0);
    expect(s.get(series("POST", "/api/v1/agents/:agent_id/coverage/refresh", 503))).toBe(2);
  });

  test("background=false still computes now", async () => {
    const res = await off.request("POST", `agents/${offAgent}/coverage/refresh?background=false`);
    expect(res.status).toBe(200);
    expect(res.body.overall_coverage).toBe(0);
    const [row] = await off.database.db.execute<{ n: number }>(sql`select count(*)::int as n from coverage_history`);
    expect(row!.n).toBe(1);
  });

  test("the flag is read from AGENTQ_BACKGROUND_REFRESH_ENABLED (default on)", async () => {
    const { loadConfig } = await import("../../src/config.ts");
    expect(loadConfig({}).backgroundRefreshEnabled).toBe(true);
    expect(loadConfig({ AGENTQ_BACKGROUND_REFRESH_ENABLED: "false" }).backgroundRefreshEnabled).toBe(false);
    expect(loadConfig({ AGENTQ_BACKGROUND_REFRESH_ENABLED: "0" }).backgroundRefreshEnabled).toBe(false);
    expect(loadConfig({ AGENTQ_BACKGROUND_REFRESH_ENABLED: "true" }).backgroundRefreshEnabled).toBe(true);
    expect(() => loadConfig({ AGENTQ_BACKGROUND_REFRESH_ENABLED: "maybe" })).toThrow("AGENTQ_BACKGROUND_REFRESH_ENABLED");
    expect(loadConfig({}).supervisorMetricsPort).toBe(9464);
    expect(loadConfig({ AGENTQ_SUPERVISOR_METRICS_PORT: "0" }).supervisorMetricsPort).toBe(0);
    expect(() => loadConfig({ AGENTQ_SUPERVISOR_METRICS_PORT: "70000" })).toThrow("AGENTQ_SUPERVISOR_METRICS_PORT");
  });
});

describe("the supervisor's metrics server", () => {
  test("serves /metrics and /healthz on its own port, and nothing else", async () => {
    const { lines, logger } = captureLogs("info");
    const metrics = createMetrics({ workers: () => ({ busy: 1, total: 3 }) });
    const server = serveMetrics({ metrics, hostname: "127.0.0.1", port: 0, logger });
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect(lines[0]).toMatchObject({ msg: "supervisor metrics listening on /metrics", port: server.port });
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      const s = samples(await res.text());
      expect(s.get("agentq_workers")).toBe(3);
      expect(s.get("agentq_workers_busy")).toBe(1);
      expect(s.get("process_cpu_seconds_total")).toBeGreaterThan(0);
      expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: "ok" });
      expect((await fetch(`${base}/metrics`, { method: "HEAD" })).status).toBe(200);
      expect((await fetch(`${base}/other`)).status).toBe(404);
      const post = await fetch(`${base}/metrics`, { method: "POST" });
      expect(post.status).toBe(405);
      expect(post.headers.get("allow")).toBe("GET, HEAD");
    } finally {
      await server.stop(true);
    }
  });
});
