/**
 * Task metrics and lifecycle log lines through a real engine (supervisor + reconciler + Bun
 * Worker threads running the fixture actors), a real PostgreSQL and Redis: the counters move
 * exactly as tasks complete, fail, crash, time out and are cancelled, each terminal transition
 * is counted and logged once, and /metrics serves it all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, startTestEngine, taskStatus, waitForStatus } from "../helpers/engine.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { captureLogs, families, samples, type CapturedLogs } from "../helpers/metrics.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { Reconciler } from "../../src/supervisor/reconciler.ts";
import { Dispatcher } from "../../src/queue/dispatch.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { requestCancel } from "../../src/db/tasks/cancel.ts";
import { countOverdueTasks } from "../../src/metrics/sources.ts";
import { oldestQueuedAgeSeconds } from "../../src/queue/dispatch.ts";

const TIMEOUT_MS = 1500;
let ctx: TestContext;
let logs: CapturedLogs;
let root: string;

beforeAll(async () => {
  logs = captureLogs("info");
  ctx = await createTestContext({ ...FAST_ENGINE, taskTimeoutMs: TIMEOUT_MS }, { logger: logs.logger });
  root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
});
afterAll(() => ctx.close());

const agentFor = async (mode?: string, ms?: number) =>
  (await postAgent(ctx, { taxonomy_node_ids: [root], features_config: mode ? { fixture: { mode, ms } } : {} })).agent_id;

async function refresh(agentId: string, priority = "medium", force = true): Promise<string> {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh${force ? "?force=true" : ""}`, { body: { priority } });
  expect(res.status).toBe(202);
  return res.body.task_id as string;
}

/** The app's own GET /metrics, parsed. */
async function scrape(): Promise<Map<string, number>> {
  const res = await ctx.request("GET", "/metrics", { anonymous: true });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return samples(res.text);
}

/** The lifecycle lines (those with an `event`) of one task. */
const linesFor = (taskId: string) => logs.lines.filter((l) => l.task_id === taskId && l.event !== undefined);
const eventsFor = (taskId: string) => linesFor(taskId).map((l) => l.event);

describe("task metrics through a real engine", () => {
  test(
    "every outcome is counted once, in the process that made it, and logged once with the task's fields",
    async () => {
      const before = await scrape();
      const delta = (series: string, now: Map<string, number>) => (now.get(series) ?? 0) - (before.get(series) ?? 0);

      // Cancelled while pending, by the API, before any engine runs. A second unforced request
      // for the same agent returns the same pending task: not a new enqueue.
      const pendingAgent = await agentFor();
      const pending = await refresh(pendingAgent, "low", false);
      expect(await refresh(pendingAgent, "low", false)).toBe(pending);
      expect((await ctx.request("DELETE", `tasks/${pending}`)).status).toBe(204);

      const engine = await startTestEngine(ctx, { workers: 2, workerUrl: FIXTURE_WORKERS.scripted });
      try {
        const ok = await refresh(await agentFor(), "high");
        const fails = await refresh(await agentFor("throws"), "low");
        const crashes = await refresh(await agentFor("exits"));
        const times = await refresh(await agentFor("slow", 10_000));
        for (const [id, status] of [
          [ok, "completed"],
          [fails, "failed"],
          [crashes, "failed"],
          [times, "timeout"],
        ] as const)
          expect(await waitForStatus(ctx, id, [status], 20_000)).toBe(status);

        // Cancelled while running: the actor stops. Then one whose actor ignores the cancel:
        // the supervisor terminates its thread after the grace period and ends the task itself.
        const running = await refresh(await agentFor("slow", 10_000));
        await waitForStatus(ctx, running, ["running"]);
        await ctx.request("DELETE", `tasks/${running}`);
        expect(await waitForStatus(ctx, running, ["cancelled"])).toBe("cancelled");
        const stubborn = await refresh(await agentFor("ignoresAbort"));
        await waitForStatus(ctx, stubborn, ["running"]);
        await ctx.request("DELETE", `tasks/${stubborn}`);
        expect(await waitForStatus(ctx, stubborn, ["cancelled"])).toBe("cancelled");
        // 3 crashes of `exits` + 1 thread terminated: 4 replacements, then 2 live idle threads.
        await eventually(async () => (engine.events.filter((e) => e.type === "worker_replaced").length >= 4 ? true : undefined));
        const now = await eventually(async () => {
          const s = await scrape();
          return s.get("agentq_workers") === 2 && s.get("agentq_workers_busy") === 0 ? s : undefined;
        });

        expect(delta(`agentq_tasks_enqueued_total{priority="high"}`, now)).toBe(1);
        expect(delta(`agentq_tasks_enqueued_total{priority="medium"}`, now)).toBe(4);
        expect(delta(`agentq_tasks_enqueued_total{priority="low"}`, now)).toBe(2);
        expect(delta(`agentq_tasks_finished_total{outcome="completed"}`, now)).toBe(1);
        expect(delta(`agentq_tasks_finished_total{outcome="failed"}`, now)).toBe(2);
        expect(delta(`agentq_tasks_finished_total{outcome="timeout"}`, now)).toBe(1);
        expect(delta(`agentq_tasks_finished_total{outcome="cancelled"}`, now)).toBe(3);
        expect(delta(`agentq_task_cancellations_total{state="pending"}`, now)).toBe(1);
        expect(delta(`agentq_task_cancellations_total{state="running"}`, now)).toBe(2);
        // Starts: ok, fails, crashes x3 (two retries), times, running, stubborn.
        expect(delta(`agentq_task_wait_seconds_count{priority="high"}`, now)).toBe(1);
        expect(delta(`agentq_task_wait_seconds_count{priority="low"}`, now)).toBe(1);
        expect(delta(`agentq_task_wait_seconds_count{priority="medium"}`, now)).toBe(6);
        // Run time of every task that ran to a terminal status (the pending cancel never ran).
        expect(delta(`agentq_task_run_seconds_count{outcome="completed"}`, now)).toBe(1);
        expect(delta(`agentq_task_run_seconds_count{outcome="failed"}`, now)).toBe(2);
        expect(delta(`agentq_task_run_seconds_count{outcome="timeout"}`, now)).toBe(1);
        expect(delta(`agentq_task_run_seconds_count{outcome="cancelled"}`, now)).toBe(2);
        // The timed-out task ran about its limit.
        const timeoutRun = delta(`agentq_task_run_seconds_sum{outcome="timeout"}`, now);
        expect(timeoutRun).toBeGreaterThanOrEqual(TIMEOUT_MS / 1000 - 0.05);
        expect(timeoutRun).toBeLessThan(TIMEOUT_MS / 1000 + 2);
        expect(delta(`agentq_tasks_recovered_total{reason="thread_crash"}`, now)).toBe(2);
        expect(delta(`agentq_worker_restarts_total{reason="crash"}`, now)).toBe(3);
        expect(delta(`agentq_worker_restarts_total{reason="unresponsive"}`, now)).toBe(1);
        const busy = delta("agentq_worker_busy_seconds_total", now);
        expect(busy).toBeGreaterThan(TIMEOUT_MS / 1000);
        expect(now.get("agentq_worker_utilisation_ratio")).toBe(0);
        expect(now.get(`agentq_queue_depth{priority="medium"}`)).toBe(0);
        expect(now.get("agentq_oldest_pending_task_age_seconds")).toBe(0);
        expect(now.get("agentq_tasks_overdue")).toBe(0);

        // Exactly once: PostgreSQL's terminal rows match the counters.
        const rows = await ctx.database.db.execute<{ status: string; n: number }>(
          sql`select status, count(*)::int as n from background_tasks group by status`,
        );
        const byStatus = Object.fromEntries(rows.map((r) => [r.status, r.n]));
        expect(byStatus).toEqual({ completed: 1, failed: 2, timeout: 1, cancelled: 3 });

        // One log line per lifecycle event, with the task's fields.
        expect(eventsFor(ok)).toEqual(["task_enqueued", "task_started", "task_completed"]);
        const [enq, started, done] = linesFor(ok);
        expect(enq).toMatchObject({ msg: "task enqueued", priority: "high", agent_id: expect.any(String) });
        expect(started).toMatchObject({ attempt: 1, priority: "high", worker_id: expect.stringContaining("-w"), agent_id: enq!.agent_id });
        expect(started!.wait_ms).toBeGreaterThanOrEqual(0);
        expect(done).toMatchObject({ attempt: 1, worker_id: started!.worker_id, agent_id: enq!.agent_id, level: 30 });
        expect(done!.duration_ms).toBeGreaterThanOrEqual(0);
        expect(eventsFor(fails)).toEqual(["task_enqueued", "task_started", "task_failed"]);
        expect(linesFor(fails)[2]).toMatchObject({ error: "fixture: task code failed", level: 40 });
        expect(eventsFor(crashes)).toEqual([
          "task_enqueued",
          "task_started",
          "task_retried",
          "task_started",
          "task_retried",
          "task_started",
          "task_failed",
        ]);
        expect(linesFor(crashes).map((l) => l.attempt)).toEqual([undefined, 1, 1, 2, 2, 3, 3]);
        expect(linesFor(crashes)[2]).toMatchObject({ reason: "thread_crash", error: expect.stringContaining("worker thread crashed") });
        expect(eventsFor(times)).toEqual(["task_enqueued", "task_started", "task_timeout"]);
        expect(eventsFor(running)).toEqual(["task_enqueued", "task_started", "task_cancelled"]);
        expect(eventsFor(stubborn)).toEqual(["task_enqueued", "task_started", "task_cancelled"]);
        expect(eventsFor(pending)).toEqual(["task_enqueued", "task_cancelled"]);
        expect(linesFor(pending)[1]).toMatchObject({ agent_id: pendingAgent, priority: "low" });
        expect(linesFor(pending)[1]).not.toHaveProperty("worker_id");
        // Thread logs reach the supervisor's logger, tagged with the thread.
        for (const line of logs.lines.filter((l) => l.event?.toString().startsWith("task_"))) expect(line.service).toBe("agentq");
      } finally {
        await engine.stop();
      }
      // A stopped supervisor reports no worker gauges.
      const after = await scrape();
      expect(after.has("agentq_workers")).toBe(false);
      expect(after.has("agentq_worker_utilisation_ratio")).toBe(false);
    },
    90_000,
  );
});

describe("a task whose database connection dies", () => {
  test("is retried (recovered, connection_lost) and fails after its last attempt, each step counted and logged once", async () => {
    const before = await scrape();
    const delta = (series: string, now: Map<string, number>) => (now.get(series) ?? 0) - (before.get(series) ?? 0);
    const engine = await startTestEngine(ctx, { workers: 1, workerUrl: FIXTURE_WORKERS.scripted, reconcile: false });
    try {
      const id = await refresh(await agentFor("dbLost"));
      expect(await waitForStatus(ctx, id, ["failed"])).toBe("failed");
      await eventually(async () => (eventsFor(id).includes("task_failed") ? true : undefined));
      const now = await scrape();
      expect(delta(`agentq_tasks_recovered_total{reason="connection_lost"}`, now)).toBe(2);
      expect(delta(`agentq_tasks_finished_total{outcome="failed"}`, now)).toBe(1);
      expect(delta(`agentq_task_run_seconds_count{outcome="failed"}`, now)).toBe(1);
      expect(eventsFor(id)).toEqual(["task_enqueued", "task_started", "task_retried", "task_started", "task_retried", "task_started", "task_failed"]);
      expect(linesFor(id)[2]).toMatchObject({ reason: "connection_lost", attempt: 1 });
      expect(linesFor(id)[6]).toMatchObject({ reason: "connection_lost", attempt: 3 });
    } finally {
      await engine.stop();
    }
  }, 30_000);
});

describe("reconciler metrics", () => {
  const reconcilerFor = () =>
    new Reconciler({
      config: ctx.config,
      database: ctx.database,
      logger: logs.logger,
      dispatcher: new Dispatcher(ctx.redis, queueKeys(ctx.config.redisPrefix)),
      metrics: ctx.metrics,
    });

  /** A running task whose owner "died": claimed with a 1 ms lease that nobody renews. */
  async function orphan(options: { maxAttempts?: number; cancel?: boolean } = {}) {
    const agentId = await agentFor();
    const { task } = await insertTask(ctx.database.db, taskInput(agentId, { maxAttempts: options.maxAttempts ?? 3 }));
    const claim = await claimTask(ctx.database.db, task.task_id, "dead-owner", 1);
    expect(claim).not.toBeNull();
    if (options.cancel) await requestCancel(ctx.database.db, task.task_id);
    return task.task_id;
  }

  test("a lapsed lease is a lease expiry, and the task is recovered or failed; a cancelled one was ended by its cancel", async () => {
    const before = await scrape();
    const delta = (series: string, now: Map<string, number>) => (now.get(series) ?? 0) - (before.get(series) ?? 0);
    const retried = await orphan();
    const exhausted = await orphan({ maxAttempts: 1 });
    const cancelled = await orphan({ cancel: true });
    const reconciler = reconcilerFor();
    let requeued = 0;
    let failed = 0;
    await eventually(async () => {
      const report = await reconciler.reconcileOnce();
      requeued += report.requeued;
      failed += report.failed;
      return requeued + failed >= 2 ? true : undefined;
    });
    const now = await scrape();
    // The cancel wrote `cancelled` and cleared the lease at once: it never expires.
    expect(delta("agentq_lease_expiries_total", now)).toBe(2);
    expect(delta(`agentq_tasks_recovered_total{reason="lease_expired"}`, now)).toBe(1);
    expect(delta(`agentq_tasks_finished_total{outcome="failed"}`, now)).toBe(1);
    expect(delta(`agentq_tasks_finished_total{outcome="cancelled"}`, now)).toBe(0);
    expect(eventsFor(retried)).toEqual(["task_retried"]);
    expect(linesFor(retried)[0]).toMatchObject({ reason: "lease_expired", attempt: 1, priority: "medium" });
    expect(eventsFor(exhausted)).toEqual(["task_failed"]);
    expect(eventsFor(cancelled)).toEqual([]);
    expect(await taskStatus(ctx, cancelled)).toBe("cancelled");
  });

  test("a pending task Redis lost is re-dispatched and counted as recovered", async () => {
    // Only this test's task is pending (earlier tests leave retried ones behind).
    await ctx.database.db.execute(sql`update background_tasks set status = 'cancelled', completed_at = now() where status = 'pending'`);
    const before = (await scrape()).get(`agentq_tasks_recovered_total{reason="redispatched"}`) ?? 0;
    const id = await refresh(await agentFor());
    await ctx.redis.del(...queueKeys(ctx.config.redisPrefix).queues);
    const reconciler = reconcilerFor();
    await eventually(async () => ((await reconciler.reconcileOnce()).redispatched > 0 ? true : undefined));
    expect((await scrape()).get(`agentq_tasks_recovered_total{reason="redispatched"}`)).toBe(before + 1);
    expect(eventsFor(id)).toEqual(["task_enqueued", "task_recovered"]);
    expect(linesFor(id)[1]).toMatchObject({ reason: "redispatched" });
    await ctx.request("DELETE", `tasks/${id}`);
  });
});

describe("scrape-time gauges", () => {
  test("queue depth per priority and the oldest queued task's age come from Redis", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    await ctx.redis.del(...keys.queues);
    expect(await oldestQueuedAgeSeconds(ctx.redis, keys)).toBe(0);
    const ids = [await refresh(await agentFor(), "high"), await refresh(await agentFor(), "low"), await refresh(await agentFor(), "low")];
    const s = await scrape();
    expect(s.get(`agentq_queue_depth{priority="high"}`)).toBe(1);
    expect(s.get(`agentq_queue_depth{priority="medium"}`)).toBe(0);
    expect(s.get(`agentq_queue_depth{priority="low"}`)).toBe(2);
    expect(s.get("agentq_oldest_pending_task_age_seconds")).toBeGreaterThanOrEqual(0);
    // The age is counted from the lowest score (enqueue time in ms) across all queues.
    await ctx.redis.zadd(keys.queue("medium"), Date.now() - 90_000, "an-old-id");
    const age = await oldestQueuedAgeSeconds(ctx.redis, keys);
    expect(age).toBeGreaterThanOrEqual(90);
    expect(age).toBeLessThan(100);
    expect((await scrape()).get("agentq_oldest_pending_task_age_seconds")).toBeGreaterThanOrEqual(90);
    for (const id of ids) await ctx.request("DELETE", `tasks/${id}`);
    await ctx.redis.del(...keys.queues);
  });

  test("overdue tasks: running past started_at + timeout + grace, found through an index on status", async () => {
    const agentId = await agentFor();
    const { task } = await insertTask(ctx.database.db, taskInput(agentId, { timeoutMs: 1000, maxAttempts: 3 }));
    await claimTask(ctx.database.db, task.task_id, "wedged", 60_000);
    expect(await countOverdueTasks(ctx.database, ctx.config.cancelGraceMs)).toBe(0);
    await ctx.database.db.execute(sql`update background_tasks set started_at = now() - interval '1 second' - ${ctx.config.cancelGraceMs + 100} * interval '1 millisecond' where task_id = ${task.task_id}`);
    expect(await countOverdueTasks(ctx.database, ctx.config.cancelGraceMs)).toBe(1);
    expect((await scrape()).get("agentq_tasks_overdue")).toBe(1);
    // Within the grace period it is not overdue yet.
    expect(await countOverdueTasks(ctx.database, ctx.config.cancelGraceMs + 60_000)).toBe(0);
    // An index on status serves the query (the partial running-lease index, or (status, completed_at)):
    // it visits running tasks only, so it stays cheap with millions of finished ones.
    const plan = await ctx.database.db.transaction(async (tx) => {
      await tx.execute(sql`set local enable_seqscan = off`);
      return tx.execute<{ "QUERY PLAN": string }>(sql`explain select count(*)::int as n from background_tasks
        where status = 'running' and lease_expires_at is not null
          and started_at + (timeout_ms + ${ctx.config.cancelGraceMs}::int) * interval '1 millisecond' < now()`);
    });
    const text = plan.map((r) => r["QUERY PLAN"]).join("\n");
    expect(text).toMatch(/Index (Only )?Scan using background_tasks_(running_lease_idx|status_completed_idx|status_idx)/);
    expect(text).not.toContain("Seq Scan");
    await ctx.database.db.execute(sql`update background_tasks set status = 'failed', completed_at = now(), lease_token = null where task_id = ${task.task_id}`);
    expect((await scrape()).get("agentq_tasks_overdue")).toBe(0);
  });

  test("/metrics declares every agentq metric", async () => {
    const res = await ctx.request("GET", "/metrics", { anonymous: true });
    const f = families(res.text);
    for (const name of [
      "agentq_tasks_enqueued_total",
      "agentq_tasks_finished_total",
      "agentq_task_wait_seconds",
      "agentq_task_run_seconds",
      "agentq_task_cancellations_total",
      "agentq_lease_expiries_total",
      "agentq_tasks_recovered_total",
      "agentq_worker_restarts_total",
      "agentq_worker_busy_seconds_total",
      "agentq_queue_depth",
      "agentq_oldest_pending_task_age_seconds",
      "agentq_tasks_overdue",
      "agentq_tasks_deferred_total",
      "agentq_tasks_held_by_agent_limit",
      "agentq_workers",
      "agentq_workers_busy",
      "agentq_worker_utilisation_ratio",
      "agentq_build_info",
      "agentq_webhook_deliveries_total",
      "agentq_webhook_attempts_total",
      "agentq_webhook_attempt_duration_seconds",
      "agentq_http_requests_total",
      "agentq_http_request_duration_seconds",
    ])
      expect(f.has(name)).toBe(true);
  });
});
