/**
 * The batched statements that fetch tasks by id (claim, settle, lease renewal, the reconciler's
 * pending check) read them by primary key only. Written with a plain status test, PostgreSQL
 * intersected the primary-key lookup with a full read of the partial index of pending (or
 * running) tasks whenever its statistics said that index was small: during a burn-down of
 * 20,000 pending tasks every claim of 32 read all 20,000 entries (src/db/tasks/byId.ts).
 *
 * The statistics are made stale on purpose (ANALYZE with nothing pending, then thousands of
 * pending tasks), and each statement runs on a connection of its own whose index-scan counters
 * are flushed (pg_stat_force_next_flush) so that pg_stat_user_indexes shows what it read.
 * And a lone enqueue (no batch to join: the low-load case) and the task reads a polling client
 * causes run prepared, as the batched statements do.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { openDatabase, type Database } from "../../src/db/client.ts";
import { insertTask, insertTasks } from "../../src/db/tasks/enqueue.ts";
import { claimTasks } from "../../src/db/tasks/claims.ts";
import { settleTasks } from "../../src/db/tasks/settle.ts";
import { renewLeases } from "../../src/db/tasks/leases.ts";
import { stillPending } from "../../src/db/tasks/recovery.ts";
import { getTaskWithAttempts } from "../../src/db/tasks/attempts.ts";
import { getTask } from "../../src/db/tasks/records.ts";

let ctx: TestContext;
let single: Database;
let agentId: string;
const BACKLOG = 3_000;

beforeAll(async () => {
  ctx = await createTestContext();
  single = openDatabase(ctx.config.databaseUrl, { max: 1, applicationName: "agentq-test-plans" });
  const root = uuid();
  await postTaxonomy(ctx, "v1", [{ node_id: root, label: "root" }]);
  agentId = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
  // Statistics taken while nothing is pending or running: both partial indexes look empty.
  await ctx.database.db.execute(sql`analyze background_tasks`);
  const backlog = Array.from({ length: BACKLOG }, () => taskInput(agentId));
  await Promise.all(await insertTasks(ctx.database.db, backlog));
});
afterAll(async () => {
  await single.close();
  await ctx.close();
});

/** Index scans of the partial indexes of pending and running tasks made by `run`. */
async function partialIndexScans(run: (db: Database["db"]) => Promise<unknown>): Promise<number> {
  const read = async () => {
    const [row] = await ctx.database.db.execute<{ n: number }>(sql`
      select coalesce(sum(idx_scan), 0)::int as n from pg_stat_user_indexes
      where indexrelname in ('background_tasks_pending_created_idx', 'background_tasks_running_lease_idx')`);
    return row!.n;
  };
  await single.db.execute(sql`select pg_stat_force_next_flush()`);
  const before = await read();
  await run(single.db);
  // The counters of a backend reach the shared statistics at its next flush: force it now.
  await single.db.execute(sql`select pg_stat_force_next_flush()`);
  await single.db.execute(sql`select 1`);
  return (await read()) - before;
}

async function pendingIds(n: number): Promise<string[]> {
  const rows = await ctx.database.db.execute<{ task_id: string }>(
    sql`select task_id from background_tasks where status = 'pending' order by created_at limit ${n}`,
  );
  return rows.map((r) => r.task_id);
}

test("a batch claim, its settle and its lease renewal read the tasks by primary key, not the partial indexes", async () => {
  const ids = await pendingIds(32);
  let claims: Awaited<ReturnType<typeof claimTasks>> = [];
  expect(await partialIndexScans(async (db) => (claims = await claimTasks(db, ids, "w-plans", 60_000)))).toBe(0);
  expect(claims).toHaveLength(32);
  // Nearly every task of the backlog running: the running index is the large one now.
  await claimTasks(ctx.database.db, await pendingIds(BACKLOG - 100), "w-other", 60_000);
  const leases = claims.map((c) => ({ taskId: c.taskId, leaseToken: c.leaseToken }));
  expect(await partialIndexScans((db) => renewLeases(db, leases, 60_000))).toBe(0);
  const settled = await partialIndexScans((db) =>
    settleTasks(db, leases.map((l) => ({ ...l, ending: { kind: "failed", error: "plan test" } }) as const)),
  );
  expect(settled).toBe(0);
  const rows = await ctx.database.db.execute<{ n: number }>(
    sql`select count(*)::int as n from background_tasks where task_id = any(${`{${ids.join(",")}}`}::text[]) and status = 'failed'`,
  );
  expect(rows[0]!.n).toBe(32);
});

test("the reconciler's check of which ids are still pending reads them by primary key", async () => {
  const ids = await pendingIds(50);
  expect(ids.length).toBeGreaterThan(0);
  let pending = new Set<string>();
  expect(await partialIndexScans(async (db) => (pending = await stillPending(db, ids)))).toBe(0);
  expect(pending.size).toBe(ids.length);
});

test("a lone enqueue's INSERT (forced or deduplicated) and the task reads of GET /tasks/{id} are prepared statements: parsed and planned once per connection", async () => {
  const { task } = await insertTask(single.db, taskInput(agentId));
  await insertTask(single.db, taskInput(agentId, { dedupe: true }));
  expect((await getTaskWithAttempts(single.db, task.task_id))?.task_id).toBe(task.task_id);
  expect((await getTask(single.db, task.task_id))?.task_id).toBe(task.task_id);
  const prepared = (await single.db.execute<{ statement: string }>(sql`select statement from pg_prepared_statements`)).map((p) =>
    p.statement.replace(/\s+/g, " ").trim(),
  );
  expect(prepared.some((s) => s.startsWith("insert into background_tasks"))).toBe(true);
  expect(prepared.some((s) => s.startsWith("with existing as") && s.includes("insert into background_tasks"))).toBe(true);
  expect(prepared.some((s) => s.includes("from task_attempts a where a.task_id = t.task_id"))).toBe(true);
  expect(prepared.some((s) => s.startsWith("select") && s.endsWith("from background_tasks where task_id = $1"))).toBe(true);
});
