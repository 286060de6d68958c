/**
 * POST /api/v1/coverage/refresh (many agents at once), against the real app, PostgreSQL and
 * Redis: one refresh per agent with the single path's deduplication, one statement and one
 * Redis round trip, unknown agent ids reported, the maximum (agent_ids and all), webhook
 * checks, metrics, the feature flag, races with single refreshes, and bad input.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext, type TestResponse } from "../helpers/app.ts";
import { countDispatchPipelines } from "../helpers/pipelines.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { samples } from "../helpers/metrics.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { eventually } from "../helpers/engine.ts";
import { newTaskId } from "../../src/core/tasks.ts";

const MAX_AGENTS = 6;

let ctx: TestContext;
let root: string;
const keys = (on: TestContext = ctx) => queueKeys(on.config.redisPrefix);

beforeAll(async () => {
  ctx = await createTestContext({ bulkMaxAgents: MAX_AGENTS });
  root = uuid();
  await postTaxonomy(ctx, "1.0.0", [{ node_id: root, label: "root" }]);
});
afterAll(() => ctx.close());

const newAgent = async (on: TestContext = ctx) => (await postAgent(on, { taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;
const bulk = (body: unknown, on: TestContext = ctx) => on.request("POST", "coverage/refresh", { body });

const pendingOf = async (agentId: string, on: TestContext = ctx) =>
  on.database.db.execute<{ task_id: string; dedupe: boolean; priority: string; webhook_url: string | null; created_at: string }>(
    sql`select task_id, dedupe, priority, webhook_url, created_at::text from background_tasks where agent_id = ${agentId} and status = 'pending' order by created_at, task_id`,
  );

const countTasks = async (on: TestContext = ctx) =>
  (await on.database.db.execute<{ n: number }>(sql`select count(*)::int as n from background_tasks`))[0]!.n;

function expectError(res: TestResponse, status: number, code: string) {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(typeof res.body.error.message).toBe("string");
}

const enqueued = async (on: TestContext = ctx) => {
  const s = samples((await on.request("GET", "/metrics", { anonymous: true })).text);
  return (priority: string) => s.get(`agentq_tasks_enqueued_total{priority="${priority}"}`) ?? 0;
};

describe("POST /coverage/refresh with agent_ids", () => {
  test("one pending refresh per agent, in the order asked, with the priority and webhook_url given, queued, counted; one statement, one pipeline", async () => {
    const agents = [await newAgent(), await newAgent(), await newAgent()];
    const before = await enqueued();
    const { result: res, pipelines } = await countDispatchPipelines(ctx.redis, () =>
      bulk({ agent_ids: agents, priority: "high", webhook_url: "https://93.184.215.14/hook" }),
    );
    expect(res.status).toBe(202);
    expect(res.body.created).toBe(3);
    expect(res.body.unknown_agent_ids).toEqual([]);
    expect(res.body.tasks.map((t: { agent_id: string }) => t.agent_id)).toEqual(agents);
    for (const task of res.body.tasks) {
      expect(task).toMatchObject({ status: "pending", priority: "high", webhook_url: "https://93.184.215.14/hook", created: true, retry_of: null, task_type: "coverage_refresh" });
      expect(task).not.toHaveProperty("result");
      expect(await ctx.redis.zscore(keys().queue("high"), task.task_id)).not.toBeNull();
    }
    // Written by one statement: one created_at; each holds its agent's deduplication slot.
    const rows = (await Promise.all(agents.map((a) => pendingOf(a)))).flat();
    expect(rows).toHaveLength(3);
    expect(new Set(rows.map((r) => r.created_at)).size).toBe(1);
    for (const r of rows) expect(r.dedupe).toBe(true);
    // One Redis round trip dispatched them all.
    expect(pipelines).toBe(1);
    const after = await enqueued();
    expect(after("high") - before("high")).toBe(3);
  });

  test("an agent with a pending refresh gets that task (created false), whatever made it; duplicates count once", async () => {
    const [a, b, c] = [await newAgent(), await newAgent(), await newAgent()];
    const single = await ctx.request("POST", `agents/${a}/coverage/refresh`, { body: { priority: "low" } });
    const forced = await ctx.request("POST", `agents/${b}/coverage/refresh?force=true`);
    const before = await enqueued();
    const res = await bulk({ agent_ids: [a, b, a, c, b.toUpperCase()] });
    expect(res.status).toBe(202);
    expect(res.body.tasks.map((t: { agent_id: string }) => t.agent_id)).toEqual([a, b, c]);
    const [ta, tb, tc] = res.body.tasks;
    expect(ta).toMatchObject({ task_id: single.body.task_id, created: false, priority: "low" });
    expect(tb).toMatchObject({ task_id: forced.body.task_id, created: false });
    expect(tc).toMatchObject({ created: true, priority: "medium" });
    expect(res.body.created).toBe(1);
    expect((await pendingOf(a)).length).toBe(1);
    expect((await pendingOf(c)).length).toBe(1);
    const after = await enqueued();
    expect(after("medium") - before("medium")).toBe(1);
    // Asked again: nothing new.
    const again = await bulk({ agent_ids: [a, b, c] });
    expect(again.body.created).toBe(0);
    expect(again.body.tasks.map((t: { task_id: string }) => t.task_id)).toEqual([ta.task_id, tb.task_id, tc.task_id]);
    // And a single refresh joins what the bulk one created.
    const joined = await ctx.request("POST", `agents/${c}/coverage/refresh`);
    expect(joined.body.task_id).toBe(tc.task_id);
  });

  test("unknown agent ids are listed and do not stop the others", async () => {
    const known = await newAgent();
    const ghost1 = uuid();
    const ghost2 = uuid();
    const res = await bulk({ agent_ids: [ghost1, known, ghost2] });
    expect(res.status).toBe(202);
    expect(res.body.unknown_agent_ids).toEqual([ghost1, ghost2]);
    expect(res.body.tasks.map((t: { agent_id: string }) => t.agent_id)).toEqual([known]);
    expect(res.body.created).toBe(1);
    const onlyGhosts = await bulk({ agent_ids: [ghost1] });
    expect(onlyGhosts.status).toBe(202);
    expect(onlyGhosts.body).toEqual({ tasks: [], created: 0, unknown_agent_ids: [ghost1] });
  });

  test("more agent_ids than AGENTQ_BULK_MAX_AGENTS is 400 too_many_agents, and nothing is written", async () => {
    const agents = await Promise.all(Array.from({ length: MAX_AGENTS + 1 }, () => newAgent()));
    const before = await countTasks();
    const res = await bulk({ agent_ids: agents });
    expectError(res, 400, "too_many_agents");
    expect(res.body.error.details).toEqual({ max: MAX_AGENTS, got: MAX_AGENTS + 1 });
    expect(await countTasks()).toBe(before);
    expect((await bulk({ agent_ids: agents.slice(0, MAX_AGENTS) })).status).toBe(202);
  });

  test("concurrent with single refreshes of the same agents, every agent ends with exactly one deduplicated pending refresh", async () => {
    for (let round = 0; round < 5; round++) {
      const agents = await Promise.all(Array.from({ length: MAX_AGENTS }, () => newAgent()));
      const answers = await Promise.all([
        bulk({ agent_ids: agents }),
        ...agents.map((a) => ctx.request("POST", `agents/${a}/coverage/refresh`)),
        bulk({ agent_ids: [...agents].reverse() }),
      ]);
      for (const a of answers) expect({ status: a.status, refused: a.status === 202 ? null : a.body }).toEqual({ status: 202, refused: null });
      for (const a of agents) {
        const pending = await pendingOf(a);
        expect(pending).toHaveLength(1);
        // Every answer names that one task.
        const named = new Set(
          answers.flatMap((ans) => (Array.isArray(ans.body.tasks) ? ans.body.tasks : [ans.body])).filter((t: { agent_id: string }) => t.agent_id === a).map((t: { task_id: string }) => t.task_id),
        );
        expect([...named]).toEqual([pending[0]!.task_id]);
      }
    }
  });
});

describe("races the statement settles", () => {
  /** Statements of this test database waiting for a lock (PostgreSQL state: re-checked until seen). */
  const lockWaiters = async () =>
    (
      await ctx.database.db.execute<{ n: number }>(sql`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock' and query like '%with requested as%'`)
    )[0]!.n;

  test("a refresh another request commits after the statement's snapshot is joined, not duplicated", async () => {
    const [a, b] = [await newAgent(), await newAgent()];
    const other = await ctx.database.sql.reserve();
    try {
      // Another request's refresh of `a`, inserted but not committed: the bulk statement does not see it, and its insert waits on it.
      await other`begin`;
      const theirs = newTaskId();
      await other`insert into background_tasks (task_id, agent_id, priority, timeout_ms, max_attempts, dedupe) values (${theirs}, ${a}, 'low', 1000, 1, true)`;
      const answer = bulk({ agent_ids: [a, b] });
      await eventually(async () => ((await lockWaiters()) > 0 ? true : undefined), 5_000, "the bulk insert to wait on the other request");
      await other`commit`;
      const res = await answer;
      expect(res.status).toBe(202);
      expect(res.body.tasks.map((t: { task_id: string; created: boolean }) => [t.task_id === theirs, t.created])).toEqual([
        [true, false],
        [false, true],
      ]);
      expect(res.body.created).toBe(1);
      expect((await pendingOf(a)).map((r) => r.task_id)).toEqual([theirs]);
      expect(await ctx.redis.zscore(keys().queue("medium"), res.body.tasks[1].task_id)).not.toBeNull();
    } finally {
      other.release();
    }
  });

  test("an agent deleted while the statement runs is reported unknown; the others are refreshed", async () => {
    const [a, b] = [await newAgent(), await newAgent()];
    const other = await ctx.database.sql.reserve();
    try {
      // The agent's row is being deleted by another transaction: the new task's foreign key check waits on it.
      await other`begin`;
      await other`delete from agents where agent_id = ${a}`;
      const answer = bulk({ agent_ids: [a, b] });
      await eventually(async () => ((await lockWaiters()) > 0 ? true : undefined), 5_000, "the bulk insert to wait on the delete");
      await other`commit`;
      const res = await answer;
      expect(res.status).toBe(202);
      expect(res.body.unknown_agent_ids).toEqual([a]);
      expect(res.body.tasks.map((t: { agent_id: string }) => t.agent_id)).toEqual([b]);
      expect(res.body.created).toBe(1);
      expect((await pendingOf(a)).length).toBe(0);
    } finally {
      other.release();
    }
  });
});

describe("POST /coverage/refresh with all", () => {
  test("refreshes every agent; more agents than the maximum is 400 too_many_agents (send agent_ids in pages), nothing written", async () => {
    const on = await createTestContext({ bulkMaxAgents: 3 });
    try {
      await postTaxonomy(on, "1.0.0", [{ node_id: root, label: "root" }]);
      const agents = [await newAgent(on), await newAgent(on), await newAgent(on)];
      const res = await bulk({ all: true, priority: "low" }, on);
      expect(res.status).toBe(202);
      expect(res.body.created).toBe(3);
      // Oldest agent first.
      expect(res.body.tasks.map((t: { agent_id: string }) => t.agent_id)).toEqual(agents);
      for (const t of res.body.tasks) expect(await on.redis.zscore(keys(on).queue("low"), t.task_id)).not.toBeNull();
      await newAgent(on);
      const before = await countTasks(on);
      const over = await bulk({ all: true }, on);
      expectError(over, 400, "too_many_agents");
      expect(over.body.error.message).toContain("agent_ids");
      expect(await countTasks(on)).toBe(before);
    } finally {
      await on.close();
    }
  });
});

describe("bad input", () => {
  test("exactly one of agent_ids and all; types, unknown fields, priorities and ids are checked: 400, nothing written", async () => {
    const agent = await newAgent();
    const before = await countTasks();
    const bodies: unknown[] = [
      {},
      { priority: "high" },
      { agent_ids: [agent], all: true },
      { all: false },
      { all: "yes" },
      { agent_ids: [] },
      { agent_ids: agent },
      { agent_ids: ["not-a-uuid"] },
      { agent_ids: [agent], priority: "urgent" },
      { agent_ids: [agent], webhook_url: "not a url" },
      { agent_ids: [agent], webhook_url: `https://93.184.215.14/${"x".repeat(2100)}` },
      { agent_ids: [agent], unexpected: 1 },
      [],
      null,
      "x",
    ];
    for (const body of bodies) {
      const res = await bulk(body);
      expect({ body, status: res.status, code: res.body?.error?.code }).toEqual({ body, status: 400, code: "validation_error" });
    }
    expectError(await ctx.request("POST", "coverage/refresh", { rawBody: "{bad" }), 400, "malformed_json");
    expect(await countTasks()).toBe(before);
  });

  test("an unsafe webhook_url is 400 unsafe_webhook_url, as for a single refresh; without a key 401", async () => {
    const agent = await newAgent();
    const before = await countTasks();
    for (const url of ["https://127.0.0.1/x", "https://10.0.0.1/", "http://93.184.215.14/"]) {
      const res = await bulk({ agent_ids: [agent], webhook_url: url });
      expectError(res, 400, "unsafe_webhook_url");
    }
    expectError(await bulk({ all: true, webhook_url: "https://[::1]/" }), 400, "unsafe_webhook_url");
    expectError(await ctx.request("POST", "coverage/refresh", { anonymous: true, body: { all: true } }), 401, "unauthorized");
    expect(await countTasks()).toBe(before);
  });

  test("with background refreshes turned off: 503 background_refresh_disabled, nothing written", async () => {
    const off = await createTestContext({ backgroundRefreshEnabled: false });
    try {
      await postTaxonomy(off, "1.0.0", [{ node_id: root, label: "root" }]);
      const agent = await newAgent(off);
      expectError(await bulk({ agent_ids: [agent] }, off), 503, "background_refresh_disabled");
      expectError(await bulk({ all: true }, off), 503, "background_refresh_disabled");
      expect(await countTasks(off)).toBe(0);
    } finally {
      await off.close();
    }
  });

  test("webhooks without a signing secret: 400 webhooks_not_configured", async () => {
    const bare = await createTestContext({ webhookSecrets: [] });
    try {
      await postTaxonomy(bare, "1.0.0", [{ node_id: root, label: "root" }]);
      const agent = await newAgent(bare);
      expectError(await bulk({ agent_ids: [agent], webhook_url: "https://93.184.215.14/hook" }, bare), 400, "webhooks_not_configured");
      expect(await countTasks(bare)).toBe(0);
    } finally {
      await bare.close();
    }
  });
});
