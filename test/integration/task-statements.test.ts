/**
 * Every task status change is one conditional UPDATE (invariant 2): these tests
 * drive the statements of src/db/tasks/ directly and prove the fencing.
 */
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { settleTask, settleTasks } from "../../src/db/tasks/settle.ts";
import { getTask } from "../../src/db/tasks/records.ts";
import { insertTask, type NewTask } from "../../src/db/tasks/enqueue.ts";
import { recordProgress, renewLeases } from "../../src/db/tasks/leases.ts";
import { requestCancel } from "../../src/db/tasks/cancel.ts";
import { requeueExpiredLeases, stalePendingTasks, stillPending } from "../../src/db/tasks/recovery.ts";
import { listCoverageHistory } from "../../src/db/coverageHistory.ts";
import { deleteExpired } from "../../src/db/retention.ts";
import type { CoverageResult } from "../../src/coverage/meter.ts";

let ctx: TestContext;
let agentId: string;
const db = () => ctx.database.db;

beforeAll(async () => {
  ctx = await createTestContext();
  const root = uuid();
  await postTaxonomy(ctx, "v1", [{ node_id: root, label: "root" }]);
  agentId = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
});
afterAll(() => ctx.close());
beforeEach(async () => {
  await db().execute(sql`delete from background_tasks`);
  await db().execute(sql`delete from coverage_history`);
});

const newTask = (over: Partial<NewTask> = {}): NewTask => taskInput(agentId, over);

const result = (): CoverageResult => ({
  agent_id: agentId,
  overall_coverage: 42.5,
  total_documents: 3,
  total_chunks: 7,
  node_coverage: {},
  version: "v1",
  calculated_at: new Date().toISOString(),
});

const completed = () => ({ kind: "completed", result: result() }) as const;

async function running() {
  const { task } = await insertTask(db(), newTask());
  const claim = await claimTask(db(), task.task_id, "w1", 60_000);
  if (!claim) throw new Error("claim failed");
  return claim;
}

const pendingCount = async () =>
  (await db().execute<{ n: number }>(sql`select count(*)::int as n from background_tasks where status = 'pending'`))[0]!.n;

const historyRows = async (taskId: string) =>
  (await db().execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where task_id = ${taskId}`))[0]!.n;

test("one pending refresh per agent: a second deduplicated insert returns the first task", async () => {
  const first = await insertTask(db(), newTask({ dedupe: true }));
  const second = await insertTask(db(), newTask({ dedupe: true }));
  const forced = await insertTask(db(), newTask({ dedupe: false }));
  expect(first.created).toBe(true);
  expect(second.created).toBe(false);
  expect(second.task.task_id).toBe(first.task.task_id);
  expect(forced.created).toBe(true);
});

test("an unforced request returns the agent's oldest pending task whatever its flag; a forced one always creates", async () => {
  const forced = await insertTask(db(), newTask({ dedupe: false }));
  await insertTask(db(), newTask({ dedupe: false }));
  // Every pending task was forced: the unforced request still gets the oldest of them, and writes nothing.
  const unforced = await insertTask(db(), newTask({ dedupe: true }));
  expect([unforced.created, unforced.task.task_id]).toEqual([false, forced.task.task_id]);
  expect(await pendingCount()).toBe(2);
  // The oldest goes; the next oldest (also forced) is the one returned now.
  await requestCancel(db(), forced.task.task_id);
  const next = (await db().execute<{ task_id: string }>(sql`
    select task_id from background_tasks where status = 'pending' order by created_at, task_id limit 1`))[0]!.task_id;
  expect((await insertTask(db(), newTask({ dedupe: true }))).task.task_id).toBe(next);
  expect((await insertTask(db(), newTask({ dedupe: false }))).created).toBe(true);
  expect(await pendingCount()).toBe(2);
});

test("a retried task, pending again (its dedupe flag cleared), is the agent's pending refresh", async () => {
  const claim = await running();
  await db().execute(sql`update background_tasks set lease_expires_at = now() - interval '1 second' where task_id = ${claim.taskId}`);
  expect((await requeueExpiredLeases(db())).map((r) => r.status)).toEqual(["pending"]);
  const again = await insertTask(db(), newTask({ dedupe: true }));
  expect([again.created, again.task.task_id, again.task.attempt]).toEqual([false, claim.taskId, 1]);
  expect(await pendingCount()).toBe(1);
});

test("concurrent unforced requests converge on one task, with nothing pending and with only a forced task pending", async () => {
  const burst = () => Promise.all(Array.from({ length: 24 }, () => insertTask(db(), newTask({ dedupe: true }))));
  const first = await burst();
  expect(first.filter((o) => o.created)).toHaveLength(1);
  expect(new Set(first.map((o) => o.task.task_id)).size).toBe(1);
  expect(await pendingCount()).toBe(1);

  await db().execute(sql`delete from background_tasks`);
  const forced = await insertTask(db(), newTask({ dedupe: false }));
  const second = await burst();
  expect(second.map((o) => [o.created, o.task.task_id])).toEqual(second.map(() => [false, forced.task.task_id]));
  expect(await pendingCount()).toBe(1);
});

test("a task is claimed once: the second claim of the same id matches nothing", async () => {
  const { task } = await insertTask(db(), newTask());
  const a = await claimTask(db(), task.task_id, "w1", 60_000);
  const b = await claimTask(db(), task.task_id, "w2", 60_000);
  expect(a?.attempt).toBe(1);
  expect(b).toBeNull();
  expect((await getTask(db(), task.task_id))?.lease_owner).toBe("w1");
});

test("a cancelled pending task cannot be claimed", async () => {
  const { task } = await insertTask(db(), newTask());
  expect(await requestCancel(db(), task.task_id)).toMatchObject({ previous: "pending", status: "cancelled", priority: "medium", agent_id: task.agent_id });
  expect(await claimTask(db(), task.task_id, "w1", 60_000)).toBeNull();
});

test("completion writes status, result, one history row and the agent's figures in one go", async () => {
  const claim = await running();
  expect((await settleTask(db(), claim.taskId, claim.leaseToken, completed()))?.status).toBe("completed");
  const task = await getTask(db(), claim.taskId);
  expect(task?.status).toBe("completed");
  expect(task?.progress_percentage).toBe(100);
  expect((task?.result as CoverageResult).overall_coverage).toBe(42.5);
  expect(await historyRows(claim.taskId)).toBe(1);
  const [agent] = await db().execute<{ coverage_percent: number; total_chunks: number }>(
    sql`select coverage_percent, total_chunks from agents where agent_id = ${agentId}`,
  );
  expect(agent).toEqual({ coverage_percent: 42.5, total_chunks: 7 });
});

test("a worker whose lease token changed writes nothing (fencing)", async () => {
  const claim = await running();
  const stale = claim.leaseToken;
  await db().execute(sql`update background_tasks set lease_token = gen_random_uuid() where task_id = ${claim.taskId}`);
  expect(await recordProgress(db(), claim.taskId, stale, 50)).toBe(false);
  expect(await settleTask(db(), claim.taskId, stale, completed())).toBeNull();
  expect(await settleTask(db(), claim.taskId, stale, { kind: "failed", error: "x" })).toBeNull();
  expect(await settleTask(db(), claim.taskId, stale, { kind: "retry", error: "crash", refund: false })).toBeNull();
  expect((await getTask(db(), claim.taskId))?.status).toBe("running");
  expect(await historyRows(claim.taskId)).toBe(0);
});

test("a cancel of a running task is durable at once and wins over its completion: cancelled, no history row", async () => {
  const claim = await running();
  expect(await requestCancel(db(), claim.taskId)).toMatchObject({ previous: "running", status: "cancelled", lease_owner: "w1" });
  expect(await getTask(db(), claim.taskId)).toMatchObject({ status: "cancelled", cancellation_requested: true });
  // The completion that lost the race writes nothing: no result, no history, no figures.
  expect(await settleTask(db(), claim.taskId, claim.leaseToken, completed())).toBeNull();
  expect(await getTask(db(), claim.taskId)).toMatchObject({ status: "cancelled", result: null });
  expect(await historyRows(claim.taskId)).toBe(0);
});

test("terminal statuses never change: cancel, end and requeue leave a completed task alone", async () => {
  const claim = await running();
  await settleTask(db(), claim.taskId, claim.leaseToken, completed());
  expect(await requestCancel(db(), claim.taskId)).toMatchObject({ previous: "completed", status: "completed" });
  expect(await settleTask(db(), claim.taskId, claim.leaseToken, { kind: "failed", error: "late" })).toBeNull();
  const task = await getTask(db(), claim.taskId);
  expect(task?.status).toBe("completed");
  expect(task?.cancellation_requested).toBe(false);
});

test("progress is recorded for the lease holder, clamped to 0..100", async () => {
  const claim = await running();
  expect(await recordProgress(db(), claim.taskId, claim.leaseToken, 250)).toBe(true);
  expect((await getTask(db(), claim.taskId))?.progress_percentage).toBe(100);
});

test("a crashed owner's task goes back to pending until its attempts run out, then fails", async () => {
  const claim1 = await running();
  const crash = { kind: "retry", error: "worker thread crashed", refund: false } as const;
  const back = await settleTask(db(), claim1.taskId, claim1.leaseToken, crash);
  expect(back?.status).toBe("pending");
  const claim2 = await claimTask(db(), claim1.taskId, "w2", 60_000);
  expect(claim2?.attempt).toBe(2);
  const last = await settleTask(db(), claim1.taskId, claim2!.leaseToken, crash);
  expect(last?.status).toBe("failed");
  expect((await getTask(db(), claim1.taskId))?.error).toBe("gave up after attempts: worker thread crashed");
});

test("a task handed back on shutdown gets its attempt refunded", async () => {
  const claim = await running();
  await settleTask(db(), claim.taskId, claim.leaseToken, { kind: "retry", error: "handed back on shutdown", refund: true });
  const task = await getTask(db(), claim.taskId);
  expect(task).toMatchObject({ status: "pending", attempt: 0, lease_owner: null });
});

test("expired leases are requeued, or failed after the last attempt; a cancelled task is not touched", async () => {
  const retry = await running();
  const exhausted = await running();
  await db().execute(sql`update background_tasks set attempt = max_attempts where task_id = ${exhausted.taskId}`);
  const cancelled = await running();
  await requestCancel(db(), cancelled.taskId);
  const healthy = await running();
  await db().execute(sql`update background_tasks set lease_expires_at = now() - interval '1 second' where task_id <> ${healthy.taskId}`);
  const outcome = Object.fromEntries((await requeueExpiredLeases(db())).map((r) => [r.task_id, r.status]));
  // The cancel ended its task and cleared its lease at once: nothing of it is left to expire.
  expect(outcome).toEqual({ [retry.taskId]: "pending", [exhausted.taskId]: "failed" });
  expect((await getTask(db(), cancelled.taskId))?.status).toBe("cancelled");
  expect((await getTask(db(), healthy.taskId))?.status).toBe("running");
});

test("lease renewal extends only matching leases; a cancelled task's lease is lost, and each lost lease says its task's status", async () => {
  const a = await running();
  const b = await running();
  await requestCancel(db(), b.taskId);
  const stale = uuid();
  const renewed = await renewLeases(
    db(),
    [
      { taskId: a.taskId, leaseToken: a.leaseToken },
      { taskId: b.taskId, leaseToken: b.leaseToken },
      { taskId: a.taskId, leaseToken: stale },
    ],
    60_000,
  );
  expect(renewed.renewedTokens).toEqual([a.leaseToken]);
  // Each lost lease says what became of its task: b was cancelled; a still runs, under another lease.
  expect(new Map(renewed.lost.map((l) => [l.leaseToken, l.status]))).toEqual(
    new Map([
      [b.leaseToken, "cancelled"],
      [stale, "running"],
    ]),
  );
  expect(await renewLeases(db(), [], 1000)).toEqual({ renewedTokens: [], lost: [] });
});

test("stale pending tasks are listed oldest first; fresh ones are not", async () => {
  const old = await insertTask(db(), newTask());
  await insertTask(db(), newTask());
  await db().execute(sql`update background_tasks set updated_at = now() - interval '1 minute' where task_id = ${old.task.task_id}`);
  expect((await stalePendingTasks(db(), 10_000)).tasks.map((t) => t.task_id)).toEqual([old.task.task_id]);
});

test("history lists newest first within the date range, and retention deletes only old rows", async () => {
  for (const [i, days] of [[1, 100], [2, 10], [3, 1]] as const)
    await db().execute(sql`
      insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version)
      values (${agentId}, now() - ${days} * interval '1 day', ${i * 10}, ${i}, ${i}, 'v1')`);
  const all = await listCoverageHistory(db(), agentId, { limit: 10, offset: 0 });
  expect(all.history.map((h) => h.overall_coverage)).toEqual([30, 20, 10]);
  const ranged = await listCoverageHistory(db(), agentId, {
    start: new Date(Date.now() - 20 * 86400_000).toISOString(),
    end: new Date(Date.now() - 5 * 86400_000).toISOString(),
    limit: 10,
    offset: 0,
  });
  expect(ranged).toMatchObject({ total: 1, history: [{ overall_coverage: 20 }] });
  const oldDone = await running();
  await settleTask(db(), oldDone.taskId, oldDone.leaseToken, completed());
  await db().execute(sql`update background_tasks set completed_at = now() - interval '2 days' where task_id = ${oldDone.taskId}`);
  const pendingOld = await insertTask(db(), newTask());
  await db().execute(sql`update background_tasks set created_at = now() - interval '2 days' where task_id = ${pendingOld.task.task_id}`);
  const deleted = await deleteExpired(db(), 86400_000, 90 * 86400_000, 1);
  expect(deleted).toEqual({ tasks: 1, history: 1 });
  expect(await getTask(db(), oldDone.taskId)).toBeNull();
  expect(await getTask(db(), pendingOld.task.task_id)).not.toBeNull();
});

test("one settle batch with two completions of one agent: both history rows, the agent shows the newer; an older result later never replaces it", async () => {
  const older = await running();
  const newer = await running();
  const at = (ms: number) => ({ ...result(), calculated_at: new Date(Date.now() + ms).toISOString() });
  const written = await settleTasks(db(), [
    { taskId: newer.taskId, leaseToken: newer.leaseToken, ending: { kind: "completed", result: { ...at(1000), overall_coverage: 80 } } },
    { taskId: older.taskId, leaseToken: older.leaseToken, ending: { kind: "completed", result: { ...at(0), overall_coverage: 20 } } },
  ]);
  expect([...written.values()].map((s) => s.status)).toEqual(["completed", "completed"]);
  expect(await historyRows(older.taskId)).toBe(1);
  expect(await historyRows(newer.taskId)).toBe(1);
  const figures = async () =>
    (await db().execute<{ coverage_percent: number }>(sql`select coverage_percent from agents where agent_id = ${agentId}`))[0]!.coverage_percent;
  expect(await figures()).toBe(80);
  // A slow batch lands later with a result measured before the one shown: history keeps it, the figures do not move.
  const late = await running();
  await settleTask(db(), late.taskId, late.leaseToken, { kind: "completed", result: { ...at(500), overall_coverage: 50 } });
  expect(await historyRows(late.taskId)).toBe(1);
  expect(await figures()).toBe(80);
});

test("stillPending keeps only the tasks no one has claimed since (the reconciler's second look before a re-dispatch)", async () => {
  const waiting = await insertTask(db(), newTask());
  const claimed = await running();
  expect(await stillPending(db(), [waiting.task.task_id, claimed.taskId, "agent-coverage-unknown"])).toEqual(new Set([waiting.task.task_id]));
  expect(await stillPending(db(), [])).toEqual(new Set());
});
