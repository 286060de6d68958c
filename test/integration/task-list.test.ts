/**
 * GET /api/v1/tasks (the console's task list) and GET /api/v1/tasks/stats, against the real
 * app, PostgreSQL and Redis: order, filters, limits, keyset paging (also while tasks arrive,
 * and through tasks that share a created_at), the opaque cursor and what it refuses, and the
 * counts of the stats.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext, type TestResponse } from "../helpers/app.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { insertTask, insertTasks } from "../../src/db/tasks/enqueue.ts";
import type { Priority, TaskStatus } from "../../src/core/tasks.ts";
import { listTasks, taskStats } from "../../src/db/tasks/list.ts";
import { PgDialect } from "drizzle-orm/pg-core";
import type { SQL } from "drizzle-orm";

let ctx: TestContext;
let root: string;
let agentA: string;
let agentB: string;
const db = () => ctx.database.db;

beforeAll(async () => {
  ctx = await createTestContext();
  root = uuid();
  await postTaxonomy(ctx, "1.0.0", [{ node_id: root, label: "root" }]);
  agentA = (await postAgent(ctx, { name: "a", taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;
  agentB = (await postAgent(ctx, { name: "b", taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;
});
afterAll(() => ctx.close());

interface Seed {
  agent: string;
  status?: TaskStatus;
  priority?: Priority;
  /** created_at as an ISO instant (default: now). */
  at?: string;
}

/** A task row written by the enqueue statement, then moved to its status and creation time directly. */
async function seed(s: Seed): Promise<string> {
  const { task } = await insertTask(db(), taskInput(s.agent, { priority: s.priority ?? "medium" }));
  await db().execute(sql`
    update background_tasks set
      status = ${s.status ?? "pending"},
      created_at = coalesce(${s.at ?? null}::timestamptz, created_at),
      started_at = case when ${s.status ?? "pending"} in ('pending') then null else now() end,
      completed_at = case when ${s.status ?? "pending"} in ('pending', 'running') then null else now() end
    where task_id = ${task.task_id}`);
  return task.task_id;
}

async function clearTasks(on: TestContext = ctx) {
  await on.database.db.execute(sql`delete from background_tasks`);
}

const list = (query = "", on: TestContext = ctx) => on.request("GET", `tasks${query ? `?${query}` : ""}`);

/** Every page of a listing, following next_cursor. */
async function allPages(query: string, limit: number): Promise<{ pages: string[][]; ids: string[] }> {
  const pages: string[][] = [];
  let cursor: string | null = null;
  for (let guard = 0; guard < 1000; guard++) {
    const res: TestResponse = await list([query, `limit=${limit}`, cursor ? `cursor=${cursor}` : ""].filter(Boolean).join("&"));
    expect(res.status).toBe(200);
    pages.push(res.body.tasks.map((t: { task_id: string }) => t.task_id));
    cursor = res.body.next_cursor;
    if (cursor === null) break;
  }
  return { pages, ids: pages.flat() };
}

function expectError(res: TestResponse, status: number, code: string) {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(typeof res.body.error.message).toBe("string");
}

const iso = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();

describe("GET /tasks", () => {
  test("lists newest first (created_at, then task_id), as stored: with retry_of and schedule_id, without result or live fields", async () => {
    await clearTasks();
    const old = await seed({ agent: agentA, at: iso(60_000) });
    const middle = await seed({ agent: agentB, status: "completed", at: iso(30_000) });
    const newest = await seed({ agent: agentA, status: "failed", priority: "high" });
    const res = await list();
    expect(res.status).toBe(200);
    expect(res.body.tasks.map((t: { task_id: string }) => t.task_id)).toEqual([newest, middle, old]);
    expect(res.body.next_cursor).toBeNull();
    const first = res.body.tasks[0];
    expect(first).toMatchObject({ task_id: newest, agent_id: agentA, status: "failed", priority: "high", retry_of: null, schedule_id: null });
    expect(first).not.toHaveProperty("result");
    expect(first).not.toHaveProperty("queue_position");
    expect(first).not.toHaveProperty("estimated_completion_at");
    expect(first.created_at).toMatch(/Z$/);
  });

  test("filters by status (one, repeated, comma-separated), agent, priority and a created_at range (after inclusive, before exclusive); filters combine", async () => {
    await clearTasks();
    const t0 = Date.now() - 10 * 60_000;
    const at = (minutes: number) => new Date(t0 + minutes * 60_000).toISOString();
    const ids = {
      aFailed: await seed({ agent: agentA, status: "failed", priority: "high", at: at(1) }),
      aTimeout: await seed({ agent: agentA, status: "timeout", priority: "low", at: at(2) }),
      bFailed: await seed({ agent: agentB, status: "failed", priority: "low", at: at(3) }),
      bPending: await seed({ agent: agentB, status: "pending", priority: "high", at: at(4) }),
      aCompleted: await seed({ agent: agentA, status: "completed", priority: "medium", at: at(5) }),
    };
    const idsOf = async (query: string) => {
      const res = await list(query);
      expect({ query, status: res.status }).toEqual({ query, status: 200 });
      return res.body.tasks.map((t: { task_id: string }) => t.task_id);
    };
    expect(await idsOf("status=failed")).toEqual([ids.bFailed, ids.aFailed]);
    expect(await idsOf("status=failed&status=timeout")).toEqual([ids.bFailed, ids.aTimeout, ids.aFailed]);
    expect(await idsOf("status=failed,timeout")).toEqual([ids.bFailed, ids.aTimeout, ids.aFailed]);
    expect(await idsOf("status=failed&status=failed")).toEqual([ids.bFailed, ids.aFailed]);
    expect(await idsOf(`agent_id=${agentB}`)).toEqual([ids.bPending, ids.bFailed]);
    expect(await idsOf("priority=high")).toEqual([ids.bPending, ids.aFailed]);
    expect(await idsOf(`status=failed&agent_id=${agentA}`)).toEqual([ids.aFailed]);
    expect(await idsOf(`status=failed&priority=low`)).toEqual([ids.bFailed]);
    // created_after is inclusive, created_before exclusive: adjacent windows neither overlap nor leave a gap.
    expect(await idsOf(`created_after=${encodeURIComponent(at(2))}&created_before=${encodeURIComponent(at(4))}`)).toEqual([ids.bFailed, ids.aTimeout]);
    expect(await idsOf(`created_after=${encodeURIComponent(at(4))}`)).toEqual([ids.aCompleted, ids.bPending]);
    expect(await idsOf(`created_before=${encodeURIComponent(at(2))}`)).toEqual([ids.aFailed]);
    // Offsets other than Z name the same instant.
    const plus2 = new Date(t0 + 2 * 60_000 + 2 * 3600_000).toISOString().replace("Z", "+02:00");
    expect(await idsOf(`created_before=${encodeURIComponent(plus2)}`)).toEqual([ids.aFailed]);
    expect(await idsOf(`agent_id=${uuid()}`)).toEqual([]);
    expect(await idsOf(`status=running`)).toEqual([]);
  });

  test("limit defaults to 50 and is at most 100", async () => {
    await clearTasks();
    await insertTasks(db(), Array.from({ length: 120 }, () => taskInput(agentA)));
    const byDefault = await list();
    expect(byDefault.body.tasks).toHaveLength(50);
    expect(typeof byDefault.body.next_cursor).toBe("string");
    const hundred = await list("limit=100");
    expect(hundred.status).toBe(200);
    expect(hundred.body.tasks).toHaveLength(100);
    const one = await list("limit=1");
    expect(one.body.tasks).toHaveLength(1);
    for (const bad of ["limit=101", "limit=0", "limit=-1", "limit=1.5", "limit=ten", "limit=1000000"]) expectError(await list(bad), 400, "validation_error");
  });

  test("pages cover every task once, in order, also through tasks that share one created_at (a batch of 23 in one statement)", async () => {
    await clearTasks();
    // insertTasks writes its batch in one statement: the 23 tasks share created_at and differ by task_id only.
    await insertTasks(db(), Array.from({ length: 23 }, (_, i) => taskInput(i % 2 ? agentA : agentB)));
    for (let i = 0; i < 4; i++) await seed({ agent: agentA, status: "failed", at: iso(1000 * (i + 1)) });
    const shared = await db().execute<{ n: number }>(sql`select count(distinct created_at)::int as n from background_tasks where status = 'pending'`);
    expect(shared[0]!.n).toBe(1);
    const expected = (
      await db().execute<{ task_id: string }>(sql`select task_id from background_tasks order by created_at desc, task_id desc`)
    ).map((r) => r.task_id);
    expect(expected).toHaveLength(27);
    for (const limit of [1, 3, 5, 27, 100]) {
      const { pages, ids } = await allPages("", limit);
      expect(ids).toEqual(expected);
      expect(pages.length).toBe(Math.max(1, Math.ceil(27 / limit)));
    }
    // Filters hold across pages too.
    const failed = await allPages("status=failed", 3);
    expect(failed.ids).toEqual(expected.filter((id) => failed.ids.includes(id)));
    expect(failed.ids).toHaveLength(4);
  });

  test("paging is stable while tasks keep arriving: no task repeated or skipped, none created after a page shows up behind it", async () => {
    await clearTasks();
    for (let i = 0; i < 4; i++) await insertTasks(db(), Array.from({ length: 10 }, () => taskInput(i % 2 ? agentA : agentB)));
    const existing = async () => new Set((await db().execute<{ task_id: string }>(sql`select task_id from background_tasks`)).map((r) => r.task_id));
    const atStart = await existing();
    expect(atStart.size).toBe(40);
    // A writer keeps inserting, batched and single, for as long as the reader pages.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await Promise.all(await insertTasks(db(), Array.from({ length: 3 }, () => taskInput(agentA))));
        await insertTask(db(), taskInput(agentB));
        written += 4;
      }
    })();
    const seen: string[] = [];
    let cursor: string | null = null;
    let committedBefore: Set<string> | null = null;
    try {
      do {
        const res: TestResponse = await list(`limit=6${cursor ? `&cursor=${cursor}` : ""}`);
        expect(res.status).toBe(200);
        const ids: string[] = res.body.tasks.map((t: { task_id: string }) => t.task_id);
        // Tasks written after the previous page was read are newer than its last task: never on this page.
        if (committedBefore) expect(ids.filter((id) => !committedBefore!.has(id))).toEqual([]);
        seen.push(...ids);
        cursor = res.body.next_cursor;
        // More tasks arrive between pages too (besides the writer's, which land during reads).
        await Promise.all(await insertTasks(db(), Array.from({ length: 2 }, () => taskInput(agentB))));
        committedBefore = await existing();
      } while (cursor !== null);
    } finally {
      writing = false;
      await writer;
    }
    expect(written).toBeGreaterThan(0);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of atStart) expect(seen).toContain(id);
  });

  test("a cursor stays valid after its task is deleted", async () => {
    await clearTasks();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await seed({ agent: agentA, status: "failed", at: iso(1000 * (5 - i)) }));
    const first = await list("limit=2");
    expect(first.body.tasks.map((t: { task_id: string }) => t.task_id)).toEqual([ids[4], ids[3]]);
    await db().execute(sql`delete from background_tasks where task_id = ${ids[3]!}`);
    const next = await list(`limit=2&cursor=${first.body.next_cursor}`);
    expect(next.status).toBe(200);
    expect(next.body.tasks.map((t: { task_id: string }) => t.task_id)).toEqual([ids[2], ids[1]]);
  });

  test("a cursor it did not issue is 400 validation_error naming /cursor, before any query", async () => {
    await clearTasks();
    await insertTasks(db(), Array.from({ length: 3 }, () => taskInput(agentA)));
    const good = (await list("limit=1")).body.next_cursor as string;
    const decoded = Buffer.from(good, "base64url").toString("utf8");
    const forge = (text: string) => Buffer.from(text, "utf8").toString("base64url");
    const [version, at, id] = decoded.split("|") as [string, string, string];
    expect(version).toBe("1");
    const bad = [
      "x",
      "not a cursor",
      "%00",
      "====",
      `${good}x`,
      good.slice(0, -2),
      `${good}=`, // padding: not the canonical spelling
      forge("hello"),
      forge(`2|${at}|${id}`), // another version
      forge(`1|${at}|not-a-task`),
      forge(`1|2024-02-30T00:00:00.000000|${id}`), // no such day
      forge(`1|0000-01-01T00:00:00.000000|${id}`),
      forge(`1|${at.slice(0, 19)}|${id}`), // no microseconds
      forge(`1|${at}|${id}|extra`),
      forge(`1|${at}|${id}\u0000`),
      "A".repeat(201),
    ];
    for (const cursor of bad) {
      const res = await list(`cursor=${encodeURIComponent(cursor)}`);
      expectError(res, 400, "validation_error");
      expect(JSON.stringify(res.body.error)).toContain("/cursor");
    }
    expect((await list(`cursor=${good}`)).status).toBe(200);
  });

  test("bad filters are 400 validation_error, never a 500", async () => {
    const bad = [
      "status=bogus",
      "status=",
      "status=failed,bogus",
      "priority=urgent",
      "agent_id=not-a-uuid",
      "created_after=yesterday",
      `created_after=${encodeURIComponent("2024-02-30T00:00:00Z")}`,
      `created_before=${encodeURIComponent("2023-02-29T00:00:00Z")}`,
      `created_after=${encodeURIComponent("0000-01-01T00:00:00Z")}`,
      `created_before=${encodeURIComponent("2024-01-01T00:00:00+16:00")}`,
      `created_after=${encodeURIComponent("+275760-09-13T00:00:00Z")}`,
      "unknown=1",
      `status=${"failed,".repeat(10)}failed`,
    ];
    for (const query of bad) {
      const res = await list(query);
      expect({ query, status: res.status, code: res.body?.error?.code }).toEqual({ query, status: 400, code: "validation_error" });
    }
  });

  test("needs the API key", async () => {
    expectError(await ctx.request("GET", "tasks", { anonymous: true }), 401, "unauthorized");
    expectError(await ctx.request("GET", "tasks/stats", { anonymous: true }), 401, "unauthorized");
  });
});

describe("GET /tasks/stats", () => {
  let stats: TestContext;
  beforeAll(async () => {
    stats = await createTestContext();
    await postTaxonomy(stats, "1.0.0", [{ node_id: root, label: "root" }]);
  });
  afterAll(() => stats.close());

  test("counts the live backlog by status and priority, the last hour's endings by status and priority, and the oldest pending task", async () => {
    const agent = (await postAgent(stats, { taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;
    const empty = await stats.request("GET", "tasks/stats");
    expect(empty.status).toBe(200);
    const zero = { high: 0, medium: 0, low: 0, total: 0 };
    expect(empty.body).toMatchObject({
      live: { total: 0, by_status: { pending: zero, running: zero } },
      last_hour: { window_seconds: 3600, finished: 0, by_status: { completed: zero, failed: zero, cancelled: zero, timeout: zero } },
      oldest_pending: null,
    });

    const put = async (status: TaskStatus, priority: Priority, options: { createdMsAgo?: number; endedMsAgo?: number } = {}) => {
      const { task } = await insertTask(stats.database.db, taskInput(agent, { priority }));
      await stats.database.db.execute(sql`
        update background_tasks set status = ${status},
          created_at = now() - ${options.createdMsAgo ?? 0}::int * interval '1 millisecond',
          completed_at = case when ${status} in ('pending', 'running') then null
                              else now() - ${options.endedMsAgo ?? 0}::int * interval '1 millisecond' end
        where task_id = ${task.task_id}`);
      return task.task_id;
    };
    const oldest = await put("pending", "low", { createdMsAgo: 90_000 });
    await put("pending", "low", { createdMsAgo: 10_000 });
    await put("pending", "high");
    await put("running", "medium");
    await put("completed", "medium", { endedMsAgo: 60_000 });
    await put("completed", "high", { endedMsAgo: 59 * 60_000 });
    await put("failed", "low", { endedMsAgo: 1000 });
    await put("timeout", "low");
    await put("cancelled", "high");
    // Ended more than an hour ago: outside the window, not counted.
    await put("completed", "medium", { endedMsAgo: 61 * 60_000 });
    await put("failed", "high", { endedMsAgo: 3 * 3600_000 });

    const res = await stats.request("GET", "tasks/stats");
    expect(res.status).toBe(200);
    const body = res.body;
    expect(body.live).toEqual({
      total: 4,
      by_status: { pending: { high: 1, medium: 0, low: 2, total: 3 }, running: { high: 0, medium: 1, low: 0, total: 1 } },
    });
    expect(body.last_hour.by_status).toEqual({
      completed: { high: 1, medium: 1, low: 0, total: 2 },
      failed: { high: 0, medium: 0, low: 1, total: 1 },
      timeout: { high: 0, medium: 0, low: 1, total: 1 },
      cancelled: { high: 1, medium: 0, low: 0, total: 1 },
    });
    expect(body.last_hour.finished).toBe(5);
    expect(Date.parse(body.calculated_at) - Date.parse(body.last_hour.since)).toBe(3600_000);
    expect(body.oldest_pending.task_id).toBe(oldest);
    expect(body.oldest_pending.age_seconds).toBeGreaterThanOrEqual(89);
    expect(body.oldest_pending.age_seconds).toBeLessThan(200);
  });
});

describe("the statements read index ranges, not the table", () => {
  let plans: TestContext;
  beforeAll(async () => {
    plans = await createTestContext();
    await postTaxonomy(plans, "1.0.0", [{ node_id: root, label: "root" }]);
    const agent = (await postAgent(plans, { taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;
    // A day of retention: 60,000 ended tasks, a small backlog; then fresh statistics.
    await plans.database.db.execute(sql`
      insert into background_tasks (task_id, agent_id, status, priority, created_at, completed_at, dedupe)
      select 'agent-coverage-' || gen_random_uuid(), ${agent}::uuid,
        (array['completed', 'completed', 'completed', 'failed', 'timeout', 'cancelled'])[1 + i % 6],
        (array['high', 'medium', 'low'])[1 + i % 3],
        now() - i * interval '1440 milliseconds' - interval '1 second', now() - i * interval '1440 milliseconds', false
      from generate_series(1, 60000) i`);
    await plans.database.db.execute(sql`
      insert into background_tasks (task_id, agent_id, status, priority, dedupe)
      select 'agent-coverage-' || gen_random_uuid(), ${agent}::uuid, 'pending', 'medium', false from generate_series(1, 200)`);
    await plans.database.db.execute(sql`analyze background_tasks`);
  });
  afterAll(() => plans.close());

  /** The statement a function issues, captured instead of run. */
  async function statementOf(call: (db: never) => Promise<unknown>): Promise<SQL> {
    let captured: SQL | undefined;
    const capturing = { execute: async (query: SQL) => { captured = query; throw new Error("captured"); } };
    await call(capturing as never).catch(() => {});
    return captured!;
  }

  interface PlanNode { "Node Type": string; "Index Name"?: string; "Relation Name"?: string; "Index Cond"?: string; Plans?: PlanNode[] }
  const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];

  async function plan(query: SQL): Promise<PlanNode[]> {
    const { sql: text, params } = new PgDialect().sqlToQuery(query);
    const [row] = await plans.database.sql.unsafe(`explain (format json) ${text}`, params as never[]);
    return nodes((row as unknown as { "QUERY PLAN": [{ Plan: PlanNode }] })["QUERY PLAN"][0].Plan);
  }
  const tableScans = (ns: PlanNode[]) => ns.filter((n) => n["Relation Name"] === "background_tasks");

  test("a page is read in index order, at any depth: no sort, no sequential scan", async () => {
    const first = await plan(await statementOf((db) => listTasks(db, {}, { limit: 50 })));
    expect(first.some((n) => n["Node Type"] === "Sort")).toBe(false);
    expect(tableScans(first).map((n) => [n["Node Type"], n["Index Name"]])).toEqual([["Index Scan", "background_tasks_created_task_idx"]]);
    const deep = await plan(await statementOf((db) => listTasks(db, {}, { limit: 50, after: { createdAt: "2020-01-01T00:00:00.000000", taskId: "agent-coverage-x" } })));
    expect(deep.some((n) => n["Node Type"] === "Sort")).toBe(false);
    const [scan] = tableScans(deep);
    expect(scan!["Index Name"]).toBe("background_tasks_created_task_idx");
    expect(scan!["Index Cond"]).toContain("ROW(created_at, task_id) <");
  });

  test("the stats never scan the table: the backlog from the pending and running indexes, the last hour as a (status, completed_at) range per status", async () => {
    const ns = await plan(await statementOf((db) => taskStats(db)));
    const scans = tableScans(ns);
    expect(scans.filter((n) => n["Node Type"] === "Seq Scan")).toEqual([]);
    const indexes = ns.filter((n) => n["Index Name"]).map((n) => n["Index Name"]);
    expect(indexes).toContain("background_tasks_pending_created_idx");
    expect(indexes).toContain("background_tasks_running_lease_idx");
    const ranges = ns.filter((n) => n["Index Name"] === "background_tasks_status_completed_idx").map((n) => n["Index Cond"]);
    expect(ranges).toHaveLength(4);
    for (const cond of ranges) expect(cond).toMatch(/^\(\(status = '(completed|failed|cancelled|timeout)'::text\) AND \(completed_at >= /);
  });
});
