/**
 * The composition root as `bun run start` wires it, in this process: a real
 * listening HTTP server, the engine with a real worker thread, graceful stop.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { loadConfig } from "../../src/config.ts";
import { openRuntime, serveApi, type Runtime } from "../../src/main.ts";
import { startEngine } from "../../src/supervisor/engine.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { TEST_API_KEY, TEST_REDIS_URL } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { randomBytes, randomUUID } from "node:crypto";

let testDb: TestDatabase;
let runtime: Runtime;

beforeAll(async () => {
  testDb = await createTestDatabase();
  const config = loadConfig(
    {},
    {
      databaseUrl: testDb.url,
      redisUrl: TEST_REDIS_URL,
      redisPrefix: `agentq-test:${randomBytes(4).toString("hex")}`,
      apiKeys: [TEST_API_KEY],
      logLevel: "silent",
      host: "127.0.0.1",
      port: 0,
    },
  );
  runtime = await openRuntime(config, "test");
});
afterAll(async () => {
  const keys = await runtime.redis.keys(`${runtime.config.redisPrefix}:*`);
  if (keys.length > 0) await runtime.redis.del(...keys);
  await runtime.close();
  await testDb.drop();
});

test("the API over real HTTP and the engine in one process run a refresh end to end, then stop cleanly", async () => {
  let draining = false;
  const app = serveApi(runtime, () => draining);
  const engine = await startEngine(runtime, { workers: 1 });
  try {
    const base = `http://127.0.0.1:${app.server!.port}`;
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { "x-api-key": TEST_API_KEY, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      // biome-ignore lint: tests read arbitrary JSON
      const json: any = res.status === 204 ? undefined : await res.json();
      return { status: res.status, body: json };
    };
    expect((await call("GET", "/readyz")).status).toBe(200);
    const node = randomUUID();
    expect((await call("POST", "/api/v1/taxonomies", { version: "1", nodes: [{ node_id: node, label: "n" }] })).status).toBe(201);
    const agent = await call("POST", "/api/v1/agents/from-taxonomy", { name: "a", taxonomy_node_ids: [node] });
    const enqueued = await call("POST", `/api/v1/agents/${agent.body.agent_id}/coverage/refresh`, { priority: "high" });
    expect(enqueued.status).toBe(202);
    const done = await eventually(async () => {
      const t = await call("GET", `/api/v1/tasks/${enqueued.body.task_id}`);
      return t.body.status === "completed" ? t.body : undefined;
    });
    expect(done.result.agent_id).toBe(agent.body.agent_id);
    draining = true;
    expect((await call("GET", "/readyz")).status).toBe(503);
  } finally {
    await app.stop();
    await engine.stop();
  }
  expect(engine.supervisor.stats()).toEqual({ workers: 0, busy: 0 });
});
