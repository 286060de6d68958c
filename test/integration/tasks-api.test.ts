/**
 * The task endpoints (no engine running): refresh, deduplication, status,
 * cancel of terminal tasks, coverage history, input errors, and retention.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { Reconciler } from "../../src/supervisor/reconciler.ts";
import { Dispatcher } from "../../src/queue/dispatch.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { createLogger } from "../../src/logger.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { settleTask } from "../../src/db/tasks/settle.ts";
import { newTaskId, TASK_ID_PATTERN } from "../../src/core/tasks.ts";

let ctx: TestContext;
let root: string;
let child: string;
const db = () => ctx.database.db;
const keys = () => queueKeys(ctx.config.redisPrefix);

beforeAll(async () => {
  ctx = await createTestContext();
  root = uuid();
  child = uuid();
  await postTaxonomy(ctx, "1.0.0", [
    { node_id: root, label: "root" },
    { node_id: child, label: "child", parent_ids: [root] },
  ]);
  // root: 2 qualifying documents (3 chunks); child: 1 document below the confidence threshold.
  await postDocument(ctx, { chunks: ["a1", "a2"], mappings: [{ node_id: root, version: "1.0.0", confidence: 0.9 }] });
  await postDocument(ctx, { chunks: ["b1"], mappings: [{ node_id: root, version: "1.0.0", confidence: 0.95 }] });
  await postDocument(ctx, { chunks: ["c1"], mappings: [{ node_id: child, version: "1.0.0", confidence: 0.2 }] }); // below threshold
});
afterAll(() => ctx.close());

const newAgent = async (name = "agent") => (await postAgent(ctx, { name, taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;

const refresh = (agentId: string, options: { body?: unknown; query?: string } = {}) =>
  ctx.request("POST", `agents/${agentId}/coverage/refresh${options.query ? `?${options.query}` : ""}`, options.body === undefined ? {} : { body: options.body });

const rowsOf = async (agentId: string) => [
  ...(await db().execute<{ task_id: string; status: string; priority: string; webhook_url: string | null }>(
    sql`select task_id, status, priority, webhook_url from background_tasks where agent_id = ${agentId} order by task_id`,
  )),
];

const UUID_V7_TASK = new RegExp(TASK_ID_PATTERN);

describe("POST /agents/{id}/coverage/refresh", () => {
  test("answers 202 with a pending task: id agent-coverage-<uuidv7>, default priority medium, webhook_url stored, queued in Redis", async () => {
    const agentId = await newAgent();
    const before = Date.now();
    const res = await refresh(agentId, { body: { webhook_url: "https://93.184.215.14/hooks/coverage" } });
    expect(res.status).toBe(202);
    const task = res.body;
    expect(task.task_id).toMatch(UUID_V7_TASK);
    expect(task.task_id).toMatch(/^agent-coverage-[0-9a-f-]{36}$/);
    expect(task).toMatchObject({
      agent_id: agentId,
      task_type: "coverage_refresh",
      status: "pending",
      priority: "medium",
      webhook_url: "https://93.184.215.14/hooks/coverage",
      progress_percentage: 0,
      queue_position: 1,
      started_at: null,
      completed_at: null,
      result: null,
      error: null,
      attempt: 0,
      cancellation_requested: false,
    });
    expect(Date.parse(task.created_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(task.created_at).toMatch(/(Z|[+-]\d\d:\d\d)$/);
    expect(typeof task.estimated_completion_at).toBe("string");
    const rows = await rowsOf(agentId);
    expect(rows).toEqual([{ task_id: task.task_id, status: "pending", priority: "medium", webhook_url: "https://93.184.215.14/hooks/coverage" }]);
    expect(await ctx.redis.zscore(keys().queue("medium"), task.task_id)).not.toBeNull();
    // GET /tasks/{id} and the agent-scoped status agree.
    const viaTasks = await ctx.request("GET", `tasks/${task.task_id}`);
    expect(viaTasks.status).toBe(200);
    expect(viaTasks.body.webhook_url).toBe("https://93.184.215.14/hooks/coverage");
    const viaAgent = await ctx.request("GET", `agents/${agentId}/coverage/status/${task.task_id}`);
    expect(viaAgent.status).toBe(200);
    expect(viaAgent.body.task_id).toBe(task.task_id);
    await ctx.request("DELETE", `tasks/${task.task_id}`);
  });

  test("with no body the task has priority medium and no webhook; an explicit priority goes to that queue", async () => {
    const agentId = await newAgent();
    const res = await refresh(agentId);
    expect(res.status).toBe(202);
    expect(res.body.priority).toBe("medium");
    expect(res.body.webhook_url).toBeNull();
    const high = await refresh(agentId, { body: { priority: "high" }, query: "force=true" });
    expect(high.status).toBe(202);
    expect(high.body.priority).toBe("high");
    expect(await ctx.redis.zscore(keys().queue("high"), high.body.task_id)).not.toBeNull();
    expect(await ctx.redis.zscore(keys().queue("medium"), high.body.task_id)).toBeNull();
    await ctx.request("DELETE", `tasks/${res.body.task_id}`);
    await ctx.request("DELETE", `tasks/${high.body.task_id}`);
  });

  test("a second refresh of the same agent while one is pending returns the same task (202) and creates nothing", async () => {
    const agentId = await newAgent();
    const first = await refresh(agentId, { body: { priority: "low" } });
    const dispatcher = new Dispatcher(ctx.redis, keys());
    const depths = await dispatcher.depths();
    const second = await refresh(agentId, { body: { priority: "high", webhook_url: "https://93.184.215.14/other" } });
    expect(first.status).toBe(202);
    // The code answers 202 for the existing task too (same representation as a new one).
    expect(second.status).toBe(202);
    expect(second.body.task_id).toBe(first.body.task_id);
    // The existing task is returned as it is: the second request's fields do not change it.
    expect(second.body.priority).toBe("low");
    expect(second.body.webhook_url).toBeNull();
    expect(await rowsOf(agentId)).toHaveLength(1);
    // Nothing more was queued.
    expect(await dispatcher.depths()).toEqual(depths);
    expect(await ctx.redis.zscore(keys().queue("low"), first.body.task_id)).not.toBeNull();
    await ctx.request("DELETE", `tasks/${first.body.task_id}`);
  });

  test("?force=true creates a new task even while one is pending", async () => {
    const agentId = await newAgent();
    const first = await refresh(agentId);
    const forced = await refresh(agentId, { query: "force=true" });
    expect(forced.status).toBe(202);
    expect(forced.body.task_id).not.toBe(first.body.task_id);
    expect(forced.body.status).toBe("pending");
    const rows = await rowsOf(agentId);
    expect(rows.map((r) => r.status)).toEqual(["pending", "pending"]);
    // Both are queued, the forced one behind the first.
    const dispatcher = new Dispatcher(ctx.redis, keys());
    const [p1, p2] = [await dispatcher.position(first.body.task_id, "medium"), await dispatcher.position(forced.body.task_id, "medium")];
    expect(p1).not.toBeNull();
    expect(p2).toBe(p1! + 1);
    // An unforced refresh after that still converges on the first (deduplicated) task.
    const again = await refresh(agentId);
    expect(again.body.task_id).toBe(first.body.task_id);
    expect(await rowsOf(agentId)).toHaveLength(2);
    for (const r of rows) await ctx.request("DELETE", `tasks/${r.task_id}`);
  });

  test("20 concurrent refreshes of one agent yield exactly one pending task", async () => {
    const agentId = await newAgent();
    const responses = await Promise.all(Array.from({ length: 20 }, () => refresh(agentId)));
    for (const r of responses) expect(r.status).toBe(202);
    const ids = new Set(responses.map((r) => r.body.task_id));
    expect(ids.size).toBe(1);
    const rows = await rowsOf(agentId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.status).toBe("pending");
    expect(rows[0]!.task_id).toBe([...ids][0]!);
    // Queued exactly once.
    expect(await ctx.redis.zscore(keys().queue("medium"), rows[0]!.task_id)).not.toBeNull();
    await ctx.request("DELETE", `tasks/${rows[0]!.task_id}`);
  });

  test("background=false answers 200 with the computed coverage, stores it on the agent and writes a history row", async () => {
    const agentId = await newAgent();
    const res = await refresh(agentId, { query: "background=false" });
    expect(res.status).toBe(200);
    // Scope {root, child}, target 10 each: root has 2 qualifying documents, child none (0.2 < 0.7).
    expect(res.body).toMatchObject({ agent_id: agentId, overall_coverage: 10, total_documents: 2, total_chunks: 3, version: "1.0.0" });
    expect(res.body.node_coverage[root]).toMatchObject({ document_count: 2, target: 10, coverage_percent: 20 });
    expect(res.body.node_coverage[child]).toMatchObject({ document_count: 0, target: 10, coverage_percent: 0 });
    expect(res.body.task_id).toBeUndefined();
    expect(await rowsOf(agentId)).toHaveLength(0); // no task
    const history = await ctx.request("GET", `agents/${agentId}/coverage/history`);
    expect(history.status).toBe(200);
    expect(history.body.total_entries).toBe(1);
    expect(history.body.history).toEqual([
      { timestamp: expect.any(String), overall_coverage: 10, total_documents: 2, total_chunks: 3, version: "1.0.0" },
    ]);
    expect(Date.parse(history.body.history[0].timestamp)).toBe(Date.parse(res.body.calculated_at));
    const agent = await ctx.request("GET", `agents/${agentId}`);
    expect(agent.body).toMatchObject({ coverage_percent: 10, total_documents: 2, total_chunks: 3 });
    expect(Date.parse(agent.body.last_coverage_update)).toBe(Date.parse(res.body.calculated_at));
  });
});

describe("GET /agents/{id}/coverage/history", () => {
  let agentId: string;
  // Five rows, one a day, inserted out of order.
  const days = ["2024-03-03", "2024-03-01", "2024-03-05", "2024-03-02", "2024-03-04"];
  const at = (d: string) => `${d}T12:00:00.000Z`;
  beforeAll(async () => {
    agentId = await newAgent("history");
    for (const [i, d] of days.entries())
      await db().execute(sql`
        insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version)
        values (${agentId}, ${at(d)}::timestamptz, ${10 + Number(d.slice(-1))}, ${i}, ${i * 2}, '1.0.0')`);
    // Another agent's history never shows up.
    const other = await newAgent("other");
    await db().execute(sql`
      insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version)
      values (${other}, ${at("2024-03-03")}::timestamptz, 99, 1, 1, '1.0.0')`);
  });
  const get = (query = "") => ctx.request("GET", `agents/${agentId}/coverage/history${query ? `?${query}` : ""}`);
  const stamps = (body: { history: { timestamp: string }[] }) => body.history.map((h) => h.timestamp.slice(0, 10));

  test("lists every entry newest first with total_entries and null date bounds", async () => {
    const res = await get();
    expect(res.status).toBe(200);
    expect(res.body.agent_id).toBe(agentId);
    expect(res.body.total_entries).toBe(5);
    expect(res.body.start_date).toBeNull();
    expect(res.body.end_date).toBeNull();
    expect(stamps(res.body)).toEqual(["2024-03-05", "2024-03-04", "2024-03-03", "2024-03-02", "2024-03-01"]);
    expect(res.body.history[0]).toEqual({ timestamp: expect.any(String), overall_coverage: 15, total_documents: 2, total_chunks: 4, version: "1.0.0" });
    expect(Date.parse(res.body.history[0].timestamp)).toBe(Date.parse(at("2024-03-05")));
  });

  test("start_date and end_date bound the range inclusively and are echoed; total_entries counts the range", async () => {
    const res = await get(`start_date=${at("2024-03-02")}&end_date=${at("2024-03-04")}`);
    expect(res.status).toBe(200);
    expect(stamps(res.body)).toEqual(["2024-03-04", "2024-03-03", "2024-03-02"]);
    expect(res.body.total_entries).toBe(3);
    expect(res.body.start_date).toBe(at("2024-03-02"));
    expect(res.body.end_date).toBe(at("2024-03-04"));
    expect(stamps((await get(`start_date=${at("2024-03-04")}`)).body)).toEqual(["2024-03-05", "2024-03-04"]);
    expect(stamps((await get(`end_date=2024-03-01T23:59:59Z`)).body)).toEqual(["2024-03-01"]);
    const none = await get(`start_date=2030-01-01T00:00:00Z`);
    expect(none.body.history).toEqual([]);
    expect(none.body.total_entries).toBe(0);
  });

  test("limit and offset page through newest first; total_entries ignores paging", async () => {
    const page1 = await get("limit=2");
    const page2 = await get("limit=2&offset=2");
    const page3 = await get("limit=2&offset=4");
    expect(stamps(page1.body)).toEqual(["2024-03-05", "2024-03-04"]);
    expect(stamps(page2.body)).toEqual(["2024-03-03", "2024-03-02"]);
    expect(stamps(page3.body)).toEqual(["2024-03-01"]);
    for (const p of [page1, page2, page3]) expect(p.body.total_entries).toBe(5);
    expect((await get("offset=10")).body.history).toEqual([]);
    const ranged = await get(`start_date=${at("2024-03-02")}&limit=1&offset=1`);
    expect(stamps(ranged.body)).toEqual(["2024-03-04"]);
    expect(ranged.body.total_entries).toBe(4);
  });

  test("bad query values answer 400", async () => {
    for (const q of ["limit=0", "limit=1001", "limit=x", "offset=-1", "start_date=yesterday", "end_date=2024-13-45", "unknown=1"]) {
      const res = await get(q);
      expect({ q, status: res.status }).toEqual({ q, status: 400 });
      expect(res.body.error.code).toBe("validation_error");
    }
  });

  test("an unknown agent answers 404", async () => {
    const res = await ctx.request("GET", `agents/${uuid()}/coverage/history`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBeDefined();
  });
});

describe("errors", () => {
  test("refresh of an unknown agent answers 404 and records nothing", async () => {
    const agentId = uuid();
    for (const query of [undefined, "background=false", "force=true"]) {
      const res = await refresh(agentId, query ? { query } : {});
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
    const [n] = await db().execute<{ n: number }>(sql`select count(*)::int as n from background_tasks where agent_id = ${agentId}`);
    expect(n!.n).toBe(0);
  });

  test("an unknown task answers 404 on GET /tasks, the agent's status and DELETE", async () => {
    const agentId = await newAgent();
    const id = newTaskId();
    for (const [method, path] of [
      ["GET", `tasks/${id}`],
      ["GET", `agents/${agentId}/coverage/status/${id}`],
      ["DELETE", `tasks/${id}`],
    ] as const) {
      const res = await ctx.request(method, path);
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 404 });
      expect(res.body.error.code).toBeDefined();
    }
  });

  test("a malformed task id answers 400", async () => {
    const agentId = await newAgent();
    for (const bad of ["nope", "agent-coverage-123", `agent-coverage-${crypto.randomUUID()}`, `task-${Bun.randomUUIDv7()}`]) {
      for (const [method, path] of [
        ["GET", `tasks/${bad}`],
        ["DELETE", `tasks/${bad}`],
        ["GET", `agents/${agentId}/coverage/status/${bad}`],
      ] as const) {
        const res = await ctx.request(method, path);
        expect({ path, status: res.status }).toEqual({ path, status: 400 });
        expect(res.body.error.code).toBe("validation_error");
      }
    }
  });

  test("a bad priority (or other bad refresh input) answers 400 and records nothing", async () => {
    const agentId = await newAgent();
    for (const body of [{ priority: "urgent" }, { priority: 1 }, { priority: null }, { webhook_url: "ftp://example.com" }, { extra: 1 }]) {
      const res = await refresh(agentId, { body });
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.body.error.code).toBe("validation_error");
    }
    expect((await refresh(agentId, { query: "background=maybe" })).status).toBe(400);
    expect((await refresh(agentId, { query: "force=perhaps" })).status).toBe(400);
    expect((await ctx.request("POST", `agents/not-a-uuid/coverage/refresh`)).status).toBe(400);
    expect(await rowsOf(agentId)).toHaveLength(0);
  });

  test("the status of another agent's task answers 404", async () => {
    const a = await newAgent("a");
    const b = await newAgent("b");
    const task = (await refresh(b)).body.task_id as string;
    const res = await ctx.request("GET", `agents/${a}/coverage/status/${task}`);
    expect(res.status).toBe(404);
    expect((await ctx.request("GET", `agents/${b}/coverage/status/${task}`)).status).toBe(200);
    await ctx.request("DELETE", `tasks/${task}`);
  });
});

describe("DELETE /tasks/{id}", () => {
  const snapshot = async (taskId: string) =>
    (await db().execute(sql`select * from background_tasks where task_id = ${taskId}`))[0] as Record<string, unknown>;

  test("of a pending task: 204, cancelled at once and out of the queue", async () => {
    const agentId = await newAgent();
    const id = (await refresh(agentId, { body: { priority: "low" } })).body.task_id as string;
    expect(await ctx.redis.zscore(keys().queue("low"), id)).not.toBeNull();
    const res = await ctx.request("DELETE", `tasks/${id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect(await ctx.redis.zscore(keys().queue("low"), id)).toBeNull();
    const view = await ctx.request("GET", `tasks/${id}`);
    expect(view.body).toMatchObject({ status: "cancelled", cancellation_requested: true, queue_position: null, estimated_completion_at: null });
    expect(view.body.completed_at).not.toBeNull();
    // Cancelled frees the agent's pending slot: a new refresh is a new task.
    const next = await refresh(agentId);
    expect(next.body.task_id).not.toBe(id);
    await ctx.request("DELETE", `tasks/${next.body.task_id}`);
  });

  test("of a terminal task (cancelled or completed) answers 204 and changes nothing", async () => {
    const agentId = await newAgent();
    // A cancelled task.
    const cancelled = (await refresh(agentId)).body.task_id as string;
    await ctx.request("DELETE", `tasks/${cancelled}`);
    // A completed task: claimed and completed through the task statements.
    const completed = (await refresh(agentId, { query: "force=true" })).body.task_id as string;
    await ctx.redis.zrem(keys().queue("medium"), completed);
    const claim = await claimTask(db(), completed, "test-worker", 60_000);
    expect(claim).not.toBeNull();
    const result = {
      agent_id: agentId,
      overall_coverage: 10,
      total_documents: 2,
      total_chunks: 3,
      node_coverage: {},
      version: "1.0.0",
      calculated_at: new Date().toISOString(),
    };
    const outcome = await settleTask(db(), completed, claim!.leaseToken, { kind: "completed", result });
    expect(outcome?.status).toBe("completed");
    for (const id of [cancelled, completed]) {
      const before = await snapshot(id);
      const res = await ctx.request("DELETE", `tasks/${id}`);
      expect(res.status).toBe(204);
      expect(await snapshot(id)).toEqual(before);
    }
    expect((await snapshot(completed)).status).toBe("completed");
    expect((await snapshot(completed)).cancellation_requested).toBe(false);
    expect((await snapshot(cancelled)).status).toBe("cancelled");
  });
});

describe("retention", () => {
  test("Reconciler.retainOnce deletes terminal tasks and history past their retention, and nothing newer or unfinished", async () => {
    const agentId = await newAgent("retention");
    const HOUR = 3600_000;
    const reconciler = new Reconciler({
      config: { ...ctx.config, taskRetentionMs: HOUR, historyRetentionMs: 2 * HOUR },
      database: ctx.database,
      dispatcher: new Dispatcher(ctx.redis, keys()),
      logger: createLogger("silent"),
    });
    // Start from a clean slate so the counts below are exact.
    await db().execute(sql`delete from background_tasks`);
    await db().execute(sql`delete from coverage_history`);

    // Tasks are recorded through the API, then moved to their status and aged with SQL UPDATEs.
    const make = async (status: string, completedAgo: number | null, createdAgo: number) => {
      const res = await refresh(agentId, { query: "force=true" });
      expect(res.status).toBe(202);
      const id = res.body.task_id as string;
      await ctx.redis.zrem(keys().queue("medium"), id);
      const ago = (ms: number) => sql`now() - ${ms} * interval '1 millisecond'`;
      await db().execute(sql`
        update background_tasks
        set status = ${status},
            created_at = ${ago(createdAgo)}, updated_at = ${ago(createdAgo)},
            completed_at = ${completedAgo === null ? null : ago(completedAgo)},
            started_at = ${status === "pending" ? null : ago(createdAgo)},
            attempt = ${status === "pending" ? 0 : 1},
            lease_token = ${status === "running" ? sql`gen_random_uuid()` : null},
            lease_expires_at = ${status === "running" ? sql`now() + interval '1 hour'` : null}
        where task_id = ${id}`);
      return id;
    };
    const oldTerminal = [
      await make("completed", 2 * HOUR, 3 * HOUR),
      await make("failed", 2 * HOUR, 3 * HOUR),
      await make("cancelled", 2 * HOUR, 3 * HOUR),
      await make("timeout", 2 * HOUR, 3 * HOUR),
    ];
    const kept = [
      // Terminal, but newer than the retention.
      await make("completed", HOUR / 2, 3 * HOUR),
      await make("failed", 60_000, 3 * HOUR),
      // Not terminal, however old (even with a stray old completed_at).
      await make("pending", null, 10 * HOUR),
      await make("pending", 5 * HOUR, 10 * HOUR),
      await make("running", null, 10 * HOUR),
      await make("running", 5 * HOUR, 10 * HOUR),
    ];
    // History rows are written by real synchronous refreshes, then aged with SQL UPDATEs.
    const history = async (ago: number) => {
      expect((await refresh(agentId, { query: "background=false" })).status).toBe(200);
      const [row] = await db().execute<{ history_id: number }>(sql`
        update coverage_history set timestamp = now() - ${ago} * interval '1 millisecond'
        where history_id = (select max(history_id) from coverage_history where agent_id = ${agentId})
        returning history_id`);
      return Number(row!.history_id);
    };
    const oldHistory = [await history(3 * HOUR), await history(30 * 24 * HOUR)];
    // 1.5 h old: past the task retention but within the history retention.
    const newHistory = [await history(1.5 * HOUR), await history(60_000)];

    const deleted = await reconciler.retainOnce();
    expect(deleted).toEqual({ tasks: oldTerminal.length, history: oldHistory.length });

    const remainingTasks = (await db().execute<{ task_id: string }>(sql`select task_id from background_tasks order by task_id`)).map((r) => r.task_id);
    expect(remainingTasks).toEqual([...kept].sort());
    const remainingHistory = (await db().execute<{ history_id: number }>(sql`select history_id from coverage_history order by history_id`)).map((r) =>
      Number(r.history_id),
    );
    expect(remainingHistory).toEqual(newHistory);

    // Idempotent: a second pass finds nothing more.
    expect(await reconciler.retainOnce()).toEqual({ tasks: 0, history: 0 });
  });
});
