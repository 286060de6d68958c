/**
 * The reconciler keeps up with a backlog: each pass pages through every expired lease and every
 * stale pending task (keyset cursor over (created_at, task_id), pages of bounded size) until a
 * page comes back short. A task Redis lost behind thousands of queued ones is re-dispatched one
 * period after it went stale, not once the backlog has drained.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { FAST_ENGINE, startTestEngine } from "../helpers/engine.ts";
import { taskInput } from "../helpers/fixtures.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { createCorpus, expectExactlyOnceEffects, loseRedisData, mapLimit, queuedIds, waitAllTerminal, type Corpus } from "../e2e/support.ts";
import { insertTask, insertTasks } from "../../src/db/tasks/enqueue.ts";
import { stalePendingTasks, type PendingCursor } from "../../src/db/tasks/recovery.ts";
import { POPPED_CLAIM_GRACE_MS, Reconciler, type ReconcileReport } from "../../src/supervisor/reconciler.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { TaskPopper } from "../../src/queue/pop.ts";
import type { Priority } from "../../src/core/tasks.ts";
import { Dispatcher } from "../../src/queue/dispatch.ts";
import { queueKeys } from "../../src/queue/keys.ts";

let ctx: TestContext;
let corpus: Corpus;
let agents: string[];
const db = () => ctx.database.db;

beforeAll(async () => {
  ctx = await createTestContext(FAST_ENGINE);
  corpus = await createCorpus(ctx);
  agents = await mapLimit(Array.from({ length: 24 }), 6, () => corpus.agent());
});
afterAll(() => ctx.close(), 15_000);

const dispatcher = () => new Dispatcher(ctx.redis, queueKeys(ctx.config.redisPrefix));
const clearTasks = async () => {
  await db().execute(sql`delete from coverage_history`);
  await db().execute(sql`delete from background_tasks`);
  await loseRedisData(ctx);
};

/** Pending tasks written in one statement (so they share created_at: ties the cursor must break by task_id). */
async function pendingBacklog(n: number): Promise<string[]> {
  const tasks = Array.from({ length: n }, (_, i) => taskInput(agents[i % agents.length]!, { timeoutMs: 60_000, maxAttempts: 3 }));
  const outcomes = await Promise.all(await insertTasks(db(), tasks));
  return outcomes.map((o) => o.task.task_id);
}

/** A reconciler that records the start and end of every pass it runs on its own timer. */
class TimedReconciler extends Reconciler {
  readonly passes: { start: number; end: number; report: ReconcileReport }[] = [];
  private waiters: (() => void)[] = [];
  constructor() {
    super({ config: ctx.config, database: ctx.database, dispatcher: dispatcher(), logger: ctx.logger, metrics: ctx.metrics });
  }
  override async reconcileOnce(): Promise<ReconcileReport> {
    const start = Date.now();
    const report = await super.reconcileOnce();
    this.passes.push({ start, end: Date.now(), report });
    for (const w of this.waiters.splice(0)) w();
    return report;
  }
  /** Resolves after the first pass (past or future) that `predicate` accepts; rejects after `timeoutMs`. */
  async waitForPass(predicate: (p: TimedReconciler["passes"][number]) => boolean, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.passes.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching reconcile pass within ${timeoutMs} ms (${this.passes.length} passes)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now() + 1);
        this.waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }
}

test("stale pending tasks come in pages after a (created_at, task_id) cursor: each exactly once, ties included, served by the pending index", async () => {
  await clearTasks();
  const ids = await pendingBacklog(2500);
  await db().execute(sql`update background_tasks set updated_at = now() - interval '1 minute'`);
  const fresh = (await insertTask(db(), taskInput(agents[0]!))).task.task_id;

  const seen: string[] = [];
  const sizes: number[] = [];
  let after: PendingCursor | undefined;
  for (;;) {
    const page = await stalePendingTasks(db(), 10_000, { after, limit: 1000 });
    sizes.push(page.tasks.length);
    seen.push(...page.tasks.map((t) => t.task_id));
    if (!page.next) break;
    after = page.next;
  }
  expect(sizes).toEqual([1000, 1000, 500]);
  expect(new Set(seen).size).toBe(2500);
  // All 2,500 share one created_at: the order (and the cursor) is by task_id within it.
  expect(seen).toEqual([...ids].sort());
  expect(seen).not.toContain(fresh);

  // A page is a range read of the partial index, with no sort of all pending tasks.
  const plan = await db().transaction(async (tx) => {
    await tx.execute(sql`set local enable_seqscan = off`);
    await tx.execute(sql`set local enable_sort = off`);
    await tx.execute(sql`set local enable_incremental_sort = off`);
    const cursor = after!;
    return tx.execute<{ "QUERY PLAN": string }>(sql`explain select task_id from background_tasks
      where status = 'pending' and updated_at < now() - interval '10 seconds'
        and (created_at, task_id) > (${cursor.createdAt}::timestamptz, ${cursor.taskId})
      order by created_at, task_id limit 1000`);
  });
  const text = plan.map((r) => r["QUERY PLAN"]).join("\n");
  expect(text).toContain("background_tasks_pending_created_idx");
  expect(text).not.toContain("Sort");
});

test("one pass requeues every expired lease, page after page; two reconcilers at once requeue each task exactly once", async () => {
  await clearTasks();
  const ids = await pendingBacklog(1200);
  // Their owners "died": claimed, leases lapsed, never renewed.
  await db().execute(sql`
    update background_tasks set status = 'running', attempt = 1, lease_token = gen_random_uuid(), lease_owner = 'dead',
      started_at = now() - interval '1 minute', lease_expires_at = now() - interval '1 second', updated_at = now()`);
  const [a, b] = [new TimedReconciler(), new TimedReconciler()];
  const reports = await Promise.all([a.reconcileOnce(), b.reconcileOnce()]);
  expect(reports.reduce((n, r) => n + r.requeued, 0)).toBe(1200);
  expect(reports.reduce((n, r) => n + r.failed, 0)).toBe(0);
  const [row] = await db().execute<{ pending: number; attempts: number }>(sql`
    select count(*) filter (where status = 'pending')::int as pending, sum(attempt)::int as attempts from background_tasks`);
  expect(row).toEqual({ pending: 1200, attempts: 1200 });
  const queued = await queuedIds(ctx);
  expect(ids.every((id) => queued.has(id))).toBe(true);
  expect(queued.size).toBe(1200);
});

test("3,000 queued pending tasks and one Redis never had: it is re-dispatched by the first pass after it goes stale; after a Redis flush all 3,001 complete", async () => {
  await clearTasks();
  const backlog = await pendingBacklog(3000);
  const d = dispatcher();
  const rows = await db().execute<{ task_id: string; priority: "medium"; created_ms: number }>(sql`
    select task_id, priority, (extract(epoch from created_at) * 1000)::float8 as created_ms from background_tasks`);
  await d.dispatch(rows.map((r) => ({ taskId: r.task_id, priority: r.priority, score: r.created_ms })));
  expect((await queuedIds(ctx)).size).toBe(3000);

  // No workers: the backlog stays. The reconciler runs on its timer (FAST_ENGINE: every 200 ms, stale after 300 ms).
  const reconciler = new TimedReconciler();
  reconciler.start();
  let missing = "";
  try {
    await reconciler.waitForPass(() => true, 5_000);
    // The API's crash window: the row committed, its ZADD never happened. It is the newest pending task.
    missing = (await insertTask(db(), taskInput(agents[0]!, { timeoutMs: 60_000, maxAttempts: 3 }))).task.task_id;
    const [row] = await db().execute<{ updated_ms: number }>(sql`
      select (extract(epoch from updated_at) * 1000)::float8 as updated_ms from background_tasks where task_id = ${missing}`);
    const staleAt = row!.updated_ms + ctx.config.stalePendingMs;
    const found = await reconciler.waitForPass((p) => p.report.redispatched > 0, 10_000);
    const latency = found.end - staleAt;
    const firstFullPass = reconciler.passes.findIndex((p) => p.start > staleAt);
    const longest = Math.max(...reconciler.passes.map((p) => p.end - p.start));
    console.log(
      `re-dispatched ${latency} ms after going stale; pass ${reconciler.passes.indexOf(found) - firstFullPass} after the first full one; ` +
        `passes over 3,001 pending took at most ${longest} ms`,
    );
    expect(found.report.redispatched).toBe(1);
    expect(await d.queuedAmong([{ taskId: missing, priority: "medium" }])).toEqual([true]);
    // Found by the first pass that started after it went stale (or the one after it: the pass and
    // PostgreSQL read "now" a few ms apart)...
    // (No pass had started after it by the JS clock: the one that found it was running at that moment.)
    expect(firstFullPass === -1 || reconciler.passes.indexOf(found) <= firstFullPass + 1).toBe(true);
    // ...so within two reconcile periods (a period: the pause plus a pass).
    expect(latency).toBeLessThanOrEqual(2 * (ctx.config.reconcileEveryMs + longest));
  } finally {
    await reconciler.stop();
  }

  // Redis loses everything. The engine's reconciler rebuilds the queues in one pass, and the workers drain them.
  expect(await loseRedisData(ctx)).toBeGreaterThan(0);
  const started = Date.now();
  const rebuild = new TimedReconciler();
  const engine = await startTestEngine(ctx, { workers: 3, workerUrl: FIXTURE_WORKERS.instant, reconcile: false });
  rebuild.start();
  try {
    const ids = [...backlog, missing];
    const final = await waitAllTerminal(ctx, ids, 25_000);
    console.log(`3,001 tasks completed ${Date.now() - started} ms after the flush`);
    const firstRepair = rebuild.passes.find((p) => p.report.redispatched > 0)!;
    expect(firstRepair.report.redispatched).toBe(3001);
    for (const id of ids) expect({ id, status: final.get(id)!.status, attempt: final.get(id)!.attempt }).toEqual({ id, status: "completed", attempt: 1 });
    await expectExactlyOnceEffects(ctx, final);
    expect((await queuedIds(ctx)).size).toBe(0);
  } finally {
    await rebuild.stop();
    await engine.stop();
  }
}, 30_000);

/** A dispatcher whose second look at the queues first lets `beforeSecondLook` run (an actor claiming meanwhile). */
class LookingDispatcher extends Dispatcher {
  looks = 0;
  constructor(private readonly beforeSecondLook: () => Promise<unknown>) {
    super(ctx.redis, queueKeys(ctx.config.redisPrefix));
  }
  override async queuedAmong(tasks: readonly { taskId: string; priority: Priority }[]): Promise<boolean[]> {
    if (tasks.length > 0 && ++this.looks === 2) await this.beforeSecondLook();
    return super.queuedAmong(tasks);
  }
}

/** One stale pending task whose id an actor has just popped from its queue (so it is in no queue). */
async function poppedStaleTask(): Promise<string> {
  await clearTasks();
  const { task } = await insertTask(db(), taskInput(agents[0]!, { timeoutMs: 60_000, maxAttempts: 3 }));
  await db().execute(sql`update background_tasks set updated_at = now() - interval '1 minute' where task_id = ${task.task_id}`);
  await dispatcher().dispatch([{ taskId: task.task_id, priority: "medium", score: Date.parse(task.created_at) }]);
  const popped = await new TaskPopper(ctx.redis, ctx.redis, queueKeys(ctx.config.redisPrefix)).take(1);
  expect(popped.map((p) => p.taskId)).toEqual([task.task_id]);
  return task.task_id;
}

const reconcilerWith = (d: Dispatcher) => new Reconciler({ config: ctx.config, database: ctx.database, dispatcher: d, logger: ctx.logger, metrics: ctx.metrics });

test("a pending id popped by an actor and claimed a moment later is not re-dispatched: the pass looks again after the grace", async () => {
  const taskId = await poppedStaleTask();
  let claimed: unknown = null;
  const d = new LookingDispatcher(async () => (claimed = await claimTask(db(), taskId, "actor-claiming-late", 60_000)));
  const report = await reconcilerWith(d).reconcileOnce();
  expect(claimed).not.toBeNull();
  expect(d.looks).toBe(2);
  expect(report.redispatched).toBe(0);
  expect((await queuedIds(ctx)).has(taskId)).toBe(false);
});

test("a popped id nobody claims (its actor died) is re-dispatched by the same pass, once the grace is over", async () => {
  const taskId = await poppedStaleTask();
  const d = new LookingDispatcher(async () => {});
  const started = Date.now();
  const report = await reconcilerWith(d).reconcileOnce();
  expect(Date.now() - started).toBeGreaterThanOrEqual(POPPED_CLAIM_GRACE_MS);
  expect(report.redispatched).toBe(1);
  expect((await queuedIds(ctx)).has(taskId)).toBe(true);
});
