/**
 * POST /api/v1/tasks/{id}/retry and POST /api/v1/tasks/retry (redrive), against the real app,
 * PostgreSQL and Redis: what a retry copies and what it takes from the configuration, the
 * statuses it refuses, "retried at most once" under concurrency, the per-call maximum, one
 * statement and one Redis round trip per bulk call, metrics, the feature flag, and bad input.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext, type TestResponse } from "../helpers/app.ts";
import { countDispatchPipelines } from "../helpers/pipelines.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { samples } from "../helpers/metrics.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import type { Priority, TaskStatus } from "../../src/core/tasks.ts";

const BULK_MAX = 5;
const TIMEOUT_MS = 45_678;
const MAX_ATTEMPTS = 4;

let ctx: TestContext;
let root: string;
const db = () => ctx.database.db;
const keys = () => queueKeys(ctx.config.redisPrefix);

beforeAll(async () => {
  ctx = await createTestContext({ bulkMaxTasks: BULK_MAX, taskTimeoutMs: TIMEOUT_MS, maxAttempts: MAX_ATTEMPTS });
  root = uuid();
  await postTaxonomy(ctx, "1.0.0", [{ node_id: root, label: "root" }]);
});
afterAll(() => ctx.close());

const newAgent = async (on: TestContext = ctx) => (await postAgent(on, { taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;

/** An ended (or pending/running) task with its own settings, written directly. */
async function ended(
  agentId: string,
  status: TaskStatus,
  options: { priority?: Priority; webhookUrl?: string | null; createdMsAgo?: number; on?: TestContext } = {},
): Promise<string> {
  const on = options.on ?? ctx;
  const { task } = await insertTask(
    on.database.db,
    taskInput(agentId, { priority: options.priority ?? "medium", webhookUrl: options.webhookUrl ?? null, timeoutMs: 1000, maxAttempts: 1 }),
  );
  await on.database.db.execute(sql`
    update background_tasks set status = ${status},
      created_at = now() - ${options.createdMsAgo ?? 0}::int * interval '1 millisecond',
      started_at = case when ${status} = 'pending' then null else now() end,
      completed_at = case when ${status} in ('pending', 'running') then null else now() end,
      attempt = case when ${status} = 'pending' then 0 else 1 end,
      error = case when ${status} = 'failed' then 'boom' else null end
    where task_id = ${task.task_id}`);
  return task.task_id;
}

const row = async (taskId: string) =>
  (
    await db().execute<{ status: string; dedupe: boolean; retry_of: string | null; timeout_ms: number; max_attempts: number; created_at: string }>(
      sql`select status, dedupe, retry_of, timeout_ms, max_attempts, created_at::text from background_tasks where task_id = ${taskId}`,
    )
  )[0];

const countTasks = async (on: TestContext = ctx) =>
  (await on.database.db.execute<{ n: number }>(sql`select count(*)::int as n from background_tasks`))[0]!.n;

const retry = (taskId: string, on: TestContext = ctx) => on.request("POST", `tasks/${taskId}/retry`);
const redrive = (body: unknown, on: TestContext = ctx) => on.request("POST", "tasks/retry", { body });

function expectError(res: TestResponse, status: number, code: string) {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(typeof res.body.error.message).toBe("string");
}

const enqueuedTotal = async () => {
  const s = samples((await ctx.request("GET", "/metrics", { anonymous: true })).text);
  return ["high", "medium", "low"].reduce((sum, p) => sum + (s.get(`agentq_tasks_enqueued_total{priority="${p}"}`) ?? 0), 0);
};

describe("POST /tasks/{id}/retry", () => {
  test("a failed, timed-out or cancelled task gets a new pending task: same agent, priority and webhook_url, limits from the configuration, retry_of set, queued", async () => {
    const agentId = await newAgent();
    for (const [status, priority] of [["failed", "high"], ["timeout", "low"], ["cancelled", "medium"]] as const) {
      const old = await ended(agentId, status, { priority, webhookUrl: "https://93.184.215.14/hook" });
      const before = await enqueuedTotal();
      const res = await retry(old);
      expect(res.status).toBe(202);
      expect(res.body).toMatchObject({
        agent_id: agentId,
        status: "pending",
        priority,
        webhook_url: "https://93.184.215.14/hook",
        retry_of: old,
        schedule_id: null,
        attempt: 0,
        timeout_ms: TIMEOUT_MS,
        max_attempts: MAX_ATTEMPTS,
        error: null,
        result: null,
      });
      expect(res.body.task_id).not.toBe(old);
      expect(res.body.queue_position).toBeGreaterThanOrEqual(1);
      expect(await ctx.redis.zscore(keys().queue(priority), res.body.task_id)).not.toBeNull();
      // A forced new task: it does not hold the agent's deduplication slot.
      expect(await row(res.body.task_id)).toMatchObject({ status: "pending", dedupe: false, retry_of: old });
      // The retried task itself is unchanged.
      expect((await row(old))!.status).toBe(status);
      expect(await enqueuedTotal()).toBe(before + 1);
      // GET /tasks/{id} shows retry_of too.
      expect((await ctx.request("GET", `tasks/${res.body.task_id}`)).body.retry_of).toBe(old);
    }
  });

  test("a completed, pending or running task is 409 conflict, and nothing is written", async () => {
    const agentId = await newAgent();
    for (const status of ["completed", "pending", "running"] as const) {
      const taskId = await ended(agentId, status);
      const before = await countTasks();
      const res = await retry(taskId);
      expectError(res, 409, "conflict");
      expect(res.body.error.message).toContain(status);
      expect(res.body.error.details).toMatchObject({ status });
      expect(await countTasks()).toBe(before);
    }
  });

  test("a task is retried at most once: a second retry is 409 naming the first retry; the retry can itself be retried once it fails", async () => {
    const agentId = await newAgent();
    const old = await ended(agentId, "failed");
    const first = await retry(old);
    expect(first.status).toBe(202);
    const second = await retry(old);
    expectError(second, 409, "conflict");
    expect(second.body.error.details.retried_by).toBe(first.body.task_id);
    await db().execute(sql`update background_tasks set status = 'failed', completed_at = now() where task_id = ${first.body.task_id}`);
    const third = await retry(first.body.task_id);
    expect(third.status).toBe(202);
    expect(third.body.retry_of).toBe(first.body.task_id);
  });

  test("concurrent retries of one task: exactly one 202, the others 409, one new row", async () => {
    const agentId = await newAgent();
    for (let round = 0; round < 5; round++) {
      const old = await ended(agentId, "timeout");
      const answers = await Promise.all(Array.from({ length: 8 }, () => retry(old)));
      const statuses = answers.map((a) => a.status).sort();
      expect(statuses).toEqual([202, 409, 409, 409, 409, 409, 409, 409]);
      for (const a of answers.filter((x) => x.status === 409)) expectError(a, 409, "conflict");
      const rows = await db().execute<{ task_id: string }>(sql`select task_id from background_tasks where retry_of = ${old}`);
      expect(rows.map((r) => r.task_id)).toEqual([answers.find((a) => a.status === 202)!.body.task_id]);
    }
  });

  test("a retry is never merged into the agent's pending refresh, and a later refresh joins the oldest pending task", async () => {
    const agentId = await newAgent();
    const pending = await ctx.request("POST", `agents/${agentId}/coverage/refresh`);
    expect(pending.status).toBe(202);
    const old = await ended(agentId, "failed");
    const res = await retry(old);
    expect(res.status).toBe(202);
    expect(res.body.task_id).not.toBe(pending.body.task_id);
    const again = await ctx.request("POST", `agents/${agentId}/coverage/refresh`);
    expect(again.body.task_id).toBe(pending.body.task_id);
  });

  test("unknown task 404, malformed id 400, without a key 401", async () => {
    expectError(await retry(`agent-coverage-${Bun.randomUUIDv7()}`), 404, "not_found");
    expectError(await retry("nope"), 400, "validation_error");
    expectError(await retry("agent-coverage-x"), 400, "validation_error");
    expectError(await ctx.request("POST", `tasks/agent-coverage-${Bun.randomUUIDv7()}/retry`, { anonymous: true }), 401, "unauthorized");
    expectError(await ctx.request("POST", "tasks/retry", { anonymous: true, body: { status: ["failed"] } }), 401, "unauthorized");
  });
});

describe("POST /tasks/retry", () => {
  /** A context of its own, so the statuses it redrives are only this test's. */
  async function isolated() {
    const on = await createTestContext({ bulkMaxTasks: BULK_MAX, taskTimeoutMs: TIMEOUT_MS, maxAttempts: MAX_ATTEMPTS });
    await postTaxonomy(on, "1.0.0", [{ node_id: root, label: "root" }]);
    return on;
  }

  test("retries the matching tasks not retried yet, oldest first, at most the maximum per call; has_more until none are left; never twice", async () => {
    const on = await isolated();
    try {
      const agentId = await newAgent(on);
      const failed: string[] = [];
      for (let i = 0; i < 12; i++) failed.push(await ended(agentId, i % 3 === 0 ? "timeout" : "failed", { createdMsAgo: (12 - i) * 1000, on }));
      await ended(agentId, "completed", { on });
      await ended(agentId, "cancelled", { on });
      const onlyFailed = failed.filter((_, i) => i % 3 !== 0);
      const timeouts = failed.filter((_, i) => i % 3 === 0);
      const results: TestResponse[] = [];
      for (let call = 0; call < 4; call++) results.push(await redrive({ status: ["failed", "timeout"] }, on));
      for (const r of results) expect(r.status).toBe(202);
      expect(results.map((r) => r.body.retried)).toEqual([5, 5, 2, 0]);
      expect(results.map((r) => r.body.has_more)).toEqual([true, true, false, false]);
      expect(results[0]!.body.max_per_call).toBe(BULK_MAX);
      // Oldest first, each retried once, nothing else retried.
      const retriedOf = results.flatMap((r) => r.body.tasks.map((t: { retry_of: string }) => t.retry_of));
      expect(retriedOf).toEqual(failed);
      expect(new Set([...onlyFailed, ...timeouts])).toEqual(new Set(retriedOf));
      for (const t of results.flatMap((r) => r.body.tasks)) {
        expect(t).toMatchObject({ agent_id: agentId, priority: "medium" });
        expect(await on.redis.zscore(queueKeys(on.config.redisPrefix).queue("medium"), t.task_id)).not.toBeNull();
      }
    } finally {
      await on.close();
    }
  });

  test("one statement and one Redis round trip per call: the new tasks share created_at, all dispatched by one pipeline", async () => {
    const on = await isolated();
    try {
      const agentId = await newAgent(on);
      for (let i = 0; i < 4; i++) await ended(agentId, "failed", { priority: i % 2 ? "high" : "low", on });
      const { result: res, pipelines } = await countDispatchPipelines(on.redis, () => redrive({ status: ["failed"] }, on));
      expect(res.status).toBe(202);
      expect(res.body.retried).toBe(4);
      expect(pipelines).toBe(1);
      const created = await on.database.db.execute<{ created_at: string; dedupe: boolean; timeout_ms: number; max_attempts: number }>(
        sql`select created_at::text, dedupe, timeout_ms, max_attempts from background_tasks where retry_of is not null`,
      );
      expect(created).toHaveLength(4);
      expect(new Set(created.map((c) => c.created_at)).size).toBe(1);
      for (const c of created) expect(c).toMatchObject({ dedupe: false, timeout_ms: TIMEOUT_MS, max_attempts: MAX_ATTEMPTS });
      const k = queueKeys(on.config.redisPrefix);
      expect(await on.redis.zcard(k.queue("high"))).toBe(2);
      expect(await on.redis.zcard(k.queue("low"))).toBe(2);
    } finally {
      await on.close();
    }
  });

  test("filters by agent and by a created_at range (after inclusive, before exclusive)", async () => {
    const on = await isolated();
    try {
      const a = await newAgent(on);
      const b = await newAgent(on);
      const old = await ended(a, "failed", { createdMsAgo: 3 * 3600_000, on });
      const recentA = await ended(a, "failed", { createdMsAgo: 60_000, on });
      const recentB = await ended(b, "failed", { createdMsAgo: 60_000, on });
      const byAgent = await redrive({ status: ["failed"], agent_id: b }, on);
      expect(byAgent.body.tasks.map((t: { retry_of: string }) => t.retry_of)).toEqual([recentB]);
      const since = new Date(Date.now() - 3600_000).toISOString();
      const byTime = await redrive({ status: ["failed"], created_after: since }, on);
      expect(byTime.body.tasks.map((t: { retry_of: string }) => t.retry_of)).toEqual([recentA]);
      const before = await redrive({ status: ["failed"], created_before: since }, on);
      expect(before.body.tasks.map((t: { retry_of: string }) => t.retry_of)).toEqual([old]);
    } finally {
      await on.close();
    }
  });

  test("concurrent calls over the same tasks retry each task exactly once", async () => {
    const on = await createTestContext({ bulkMaxTasks: 100 });
    try {
      await postTaxonomy(on, "1.0.0", [{ node_id: root, label: "root" }]);
      const agentId = await newAgent(on);
      const failed = new Set<string>();
      for (let i = 0; i < 30; i++) failed.add(await ended(agentId, "failed", { on }));
      const answers = await Promise.all(Array.from({ length: 4 }, () => redrive({ status: ["failed"] }, on)));
      for (const a of answers) expect(a.status).toBe(202);
      const retriedOf = answers.flatMap((a) => a.body.tasks.map((t: { retry_of: string }) => t.retry_of));
      expect(retriedOf.length).toBe(30);
      expect(new Set(retriedOf)).toEqual(failed);
      const rows = await on.database.db.execute<{ n: number }>(sql`select count(*)::int as n from background_tasks where retry_of is not null`);
      expect(rows[0]!.n).toBe(30);
    } finally {
      await on.close();
    }
  });

  test("bad bodies are 400 in the error shape, and nothing is written", async () => {
    const agentId = await newAgent();
    await ended(agentId, "failed");
    const before = await countTasks();
    const bodies: unknown[] = [
      {},
      { status: [] },
      { status: "failed" },
      { status: ["completed"] },
      { status: ["pending"] },
      { status: ["running"] },
      { status: ["failed", "bogus"] },
      { status: ["failed", "failed", "failed", "failed"] },
      { status: ["failed"], agent_id: "x" },
      { status: ["failed"], created_after: "2024-02-30T00:00:00Z" },
      { status: ["failed"], created_before: "yesterday" },
      { status: ["failed"], unexpected: 1 },
      [],
      null,
    ];
    for (const body of bodies) {
      const res = await redrive(body);
      expect({ body, status: res.status, code: res.body?.error?.code }).toEqual({ body, status: 400, code: "validation_error" });
    }
    expectError(await ctx.request("POST", "tasks/retry", { rawBody: "{bad" }), 400, "malformed_json");
    expect(await countTasks()).toBe(before);
  });
});

describe("with background refreshes turned off", () => {
  test("both retries answer 503 background_refresh_disabled and write nothing", async () => {
    const off = await createTestContext({ backgroundRefreshEnabled: false });
    try {
      await postTaxonomy(off, "1.0.0", [{ node_id: root, label: "root" }]);
      const agentId = await newAgent(off);
      const old = await ended(agentId, "failed", { on: off });
      const before = await countTasks(off);
      expectError(await retry(old, off), 503, "background_refresh_disabled");
      expectError(await redrive({ status: ["failed"] }, off), 503, "background_refresh_disabled");
      expect(await countTasks(off)).toBe(before);
      expect(await off.redis.keys(`${off.config.redisPrefix}:*queue*`)).toEqual([]);
    } finally {
      await off.close();
    }
  });
});
