/**
 * The task lifecycle through a real engine (supervisor + reconciler + Bun
 * Worker threads) running fixture actors that complete, report progress,
 * throw, crash, hang or ignore aborts (see test/fixtures/workers/).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, startTestEngine, waitForStatus, type TestEngine } from "../helpers/engine.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import type { SupervisorEvent } from "../../src/supervisor/supervisor.ts";
import type { Config } from "../../src/config.ts";

/** Timeout of a task in the timeout tests' context (taken from the API's config when the task is recorded). */
const SHORT_TIMEOUT_MS = 300;

let ctx: TestContext;
/** Same engine settings, but tasks get a 300 ms time limit. */
let ctxShort: TestContext;
const roots = new Map<TestContext, string>();

async function seedCorpus(c: TestContext) {
  const root = uuid();
  const child = uuid();
  await postTaxonomy(c, "1.0.0", [
    { node_id: root, label: "root" },
    { node_id: child, label: "child", parent_ids: [root] },
  ]);
  // Scope {root, child}, default target 10: root 2 qualifying documents (3 chunks), child none -> 10 %.
  await postDocument(c, { chunks: ["a1", "a2"], mappings: [{ node_id: root, version: "1.0.0", confidence: 0.9 }] });
  await postDocument(c, { chunks: ["b1"], mappings: [{ node_id: root, version: "1.0.0", confidence: 0.8 }] });
  await postDocument(c, { chunks: ["c1"], mappings: [{ node_id: child, version: "1.0.0", confidence: 0.1 }] });
  roots.set(c, root);
}
const EXPECTED = { overall_coverage: 10, total_documents: 2, total_chunks: 3, version: "1.0.0" };

beforeAll(async () => {
  [ctx, ctxShort] = await Promise.all([createTestContext(FAST_ENGINE), createTestContext({ ...FAST_ENGINE, taskTimeoutMs: SHORT_TIMEOUT_MS })]);
  await Promise.all([seedCorpus(ctx), seedCorpus(ctxShort)]);
});
afterAll(async () => {
  await Promise.all([ctx.close(), ctxShort.close()]);
});
// Every test stops its engine; what a failed test may leave unfinished must not run in the next one.
afterEach(async () => {
  for (const c of [ctx, ctxShort]) {
    await c.database.db.execute(sql`
      update background_tasks set status = 'cancelled', completed_at = now(), lease_token = null, lease_expires_at = null
      where status in ('pending', 'running')`);
    await c.redis.del(...queueKeys(c.config.redisPrefix).queues);
  }
});

type Mode = "slow" | "throws" | "exits" | "crashes" | "hangs" | "ignoresAbort";

/** An agent whose tasks run `mode` in the scripted fixture worker (real coverage without a mode). */
async function agentFor(c: TestContext, mode?: Mode, ms?: number): Promise<string> {
  const body = { name: mode ?? "plain", taxonomy_node_ids: [roots.get(c)!], features_config: mode ? { fixture: { mode, ms } } : {} };
  return (await postAgent(c, body)).agent_id;
}

async function refresh(c: TestContext, agentId: string): Promise<string> {
  const res = await c.request("POST", `agents/${agentId}/coverage/refresh?force=true`);
  expect(res.status).toBe(202);
  return res.body.task_id as string;
}

const engineFor = (c: TestContext, config?: Partial<Config>, onFatal?: (e: Error) => void) =>
  startTestEngine(c, { workers: 1, workerUrl: FIXTURE_WORKERS.scripted, ...(config ? { config } : {}), ...(onFatal ? { onFatal } : {}) });

async function withEngine<T>(engine: TestEngine, body: (engine: TestEngine) => Promise<T>): Promise<T> {
  try {
    return await body(engine);
  } finally {
    await engine.stop();
  }
}

async function row(c: TestContext, taskId: string) {
  const [r] = await c.database.db.execute<Record<string, unknown>>(sql`select * from background_tasks where task_id = ${taskId}`);
  if (!r) throw new Error(`no task ${taskId}`);
  return r;
}

/** completed_at - started_at of a task, by PostgreSQL's clock. */
async function runMs(c: TestContext, taskId: string): Promise<number> {
  const [r] = await c.database.db.execute<{ ms: number }>(
    sql`select (extract(epoch from completed_at - started_at) * 1000)::float8 as ms from background_tasks where task_id = ${taskId}`,
  );
  return Number(r!.ms);
}

async function historyRows(c: TestContext, taskId: string): Promise<number> {
  const [r] = await c.database.db.execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where task_id = ${taskId}`);
  return r!.n;
}

async function figures(c: TestContext, agentId: string) {
  const [r] = await c.database.db.execute<{ coverage_percent: number; total_documents: number; total_chunks: number; last_coverage_update: string | null }>(
    sql`select coverage_percent, total_documents, total_chunks, last_coverage_update from agents where agent_id = ${agentId}`,
  );
  return { ...r!, coverage_percent: Number(r!.coverage_percent) };
}
const UNTOUCHED = { coverage_percent: 0, total_documents: 0, total_chunks: 0, last_coverage_update: null };

const started = (taskId: string) => (e: SupervisorEvent) => e.type === "task_started" && e.taskId === taskId;
const finished = (taskId: string) => (e: SupervisorEvent) => e.type === "task_finished" && e.taskId === taskId;
const count = (engine: TestEngine, predicate: (e: SupervisorEvent) => boolean) => engine.events.filter(predicate).length;

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms))),
  ]);
}

describe("completion and progress", () => {
  test("a completed task has its result, progress 100, one coverage_history row with its task_id, and the agent's figures updated", async () => {
    const agentId = await agentFor(ctx);
    expect(await figures(ctx, agentId)).toEqual(UNTOUCHED);
    await withEngine(await engineFor(ctx), async (engine) => {
      const id = await refresh(ctx, agentId);
      const done = await engine.waitForEvent(finished(id));
      expect(done).toMatchObject({ outcome: "completed" });
      const view = (await ctx.request("GET", `tasks/${id}`)).body;
      expect(view).toMatchObject({ status: "completed", progress_percentage: 100, error: null, attempt: 1, queue_position: null });
      expect(view.result).toMatchObject({ agent_id: agentId, ...EXPECTED });
      expect(Date.parse(view.completed_at)).toBeGreaterThanOrEqual(Date.parse(view.started_at));
      const [h] = await ctx.database.db.execute<Record<string, unknown>>(sql`select * from coverage_history where agent_id = ${agentId}`);
      expect(await historyRows(ctx, id)).toBe(1);
      expect(h).toMatchObject({ task_id: id, total_documents: 2, total_chunks: 3, version: "1.0.0" });
      expect(Number(h!.overall_coverage)).toBe(10);
      const after = await figures(ctx, agentId);
      expect(after).toMatchObject({ coverage_percent: 10, total_documents: 2, total_chunks: 3 });
      expect(new Date(after.last_coverage_update!).toISOString()).toBe(new Date(view.result.calculated_at).toISOString());
      const history = (await ctx.request("GET", `agents/${agentId}/coverage/history`)).body;
      expect(history.total_entries).toBe(1);
      expect(history.history[0]).toMatchObject(EXPECTED);
    });
  });

  test("progress_percentage moves while a slow task runs: intermediate values in task_progress events and in PostgreSQL", async () => {
    const agentId = await agentFor(ctx, "slow", 1500);
    await withEngine(await engineFor(ctx), async (engine) => {
      const id = await refresh(ctx, agentId);
      const event = await engine.waitForEvent((e) => e.type === "task_progress" && e.taskId === id && e.percent >= 1 && e.percent <= 99);
      expect(event.type).toBe("task_progress");
      // The stored progress moves too, visible through the API while the task runs.
      const seen = await eventually(
        async () => {
          const view = (await ctx.request("GET", `tasks/${id}`)).body;
          return view.status === "running" && view.progress_percentage >= 1 && view.progress_percentage <= 99 ? view : undefined;
        },
        5000,
        "an intermediate progress_percentage",
      );
      expect(seen.queue_position).toBeNull();
      expect(typeof seen.estimated_completion_at).toBe("string");
      expect(await engine.waitForEvent(finished(id))).toMatchObject({ outcome: "completed" });
      const percents = engine.events.flatMap((e) => (e.type === "task_progress" && e.taskId === id ? [e.percent] : []));
      // Strictly increasing, several distinct steps.
      expect(percents.length).toBeGreaterThanOrEqual(5);
      for (let i = 1; i < percents.length; i++) expect(percents[i]!).toBeGreaterThan(percents[i - 1]!);
      expect((await row(ctx, id)).progress_percentage).toBe(100);
    });
  });

  test("task code that throws ends failed with its message, once, without retry or history", async () => {
    const agentId = await agentFor(ctx, "throws");
    await withEngine(await engineFor(ctx), async (engine) => {
      const id = await refresh(ctx, agentId);
      expect(await engine.waitForEvent(finished(id))).toMatchObject({ outcome: "failed" });
      const view = (await ctx.request("GET", `tasks/${id}`)).body;
      expect(view).toMatchObject({ status: "failed", error: "fixture: task code failed", attempt: 1, result: null });
      expect(view.completed_at).not.toBeNull();
      expect(count(engine, started(id))).toBe(1);
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
      expect(await historyRows(ctx, id)).toBe(0);
      expect(await figures(ctx, agentId)).toEqual(UNTOUCHED);
    });
  });
});

describe("cancellation", () => {
  test("cancelling a pending task (no engine running) ends it cancelled, removes it from Redis, and it never starts once an engine runs", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    const victimAgent = await agentFor(ctx);
    const victim = await refresh(ctx, victimAgent);
    expect(await ctx.redis.zscore(keys.queue("medium"), victim)).not.toBeNull();
    expect((await ctx.request("DELETE", `tasks/${victim}`)).status).toBe(204);
    expect(await row(ctx, victim)).toMatchObject({ status: "cancelled", cancellation_requested: true, attempt: 0, started_at: null });
    expect(await ctx.redis.zscore(keys.queue("medium"), victim)).toBeNull();
    // Even if a stale copy of the id reached the queue (a race, a re-dispatch), it must not run:
    // put it at the head of the high queue, ahead of a task that must run.
    await ctx.redis.zadd(keys.queue("high"), 0, victim);
    const other = await refresh(ctx, await agentFor(ctx));
    await withEngine(await engineFor(ctx), async (engine) => {
      expect(await engine.waitForEvent(finished(other))).toMatchObject({ outcome: "completed" });
      expect(count(engine, started(victim))).toBe(0);
      expect(await row(ctx, victim)).toMatchObject({ status: "cancelled", attempt: 0, started_at: null, progress_percentage: 0 });
      expect(await ctx.redis.zcard(keys.queue("high"))).toBe(0);
      expect(await historyRows(ctx, victim)).toBe(0);
      expect(await figures(ctx, victimAgent)).toEqual(UNTOUCHED);
    });
  });

  test("cancelling a running slow task ends it cancelled within a second, with no history row and the agent's figures untouched", async () => {
    const agentId = await agentFor(ctx, "slow", 5000);
    await withEngine(await engineFor(ctx), async (engine) => {
      const id = await refresh(ctx, agentId);
      await engine.waitForEvent(started(id));
      // Cancel once a first progress step is stored, so the task is well under way.
      await eventually(async () => (((await row(ctx, id)).progress_percentage as number) > 0 ? true : undefined), 5000, "stored progress");
      const t0 = performance.now();
      expect((await ctx.request("DELETE", `tasks/${id}`)).status).toBe(204);
      expect(await waitForStatus(ctx, id, ["cancelled", "completed", "failed", "timeout"], 1000)).toBe("cancelled");
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeLessThan(1000);
      expect(await engine.waitForEvent(finished(id))).toMatchObject({ outcome: "cancelled" });
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
      const r = await row(ctx, id);
      expect(r).toMatchObject({ status: "cancelled", cancellation_requested: true, error: null, result: null, lease_token: null });
      expect(r.completed_at).not.toBeNull();
      expect(r.progress_percentage as number).toBeLessThan(100);
      expect(await historyRows(ctx, id)).toBe(0);
      expect(await figures(ctx, agentId)).toEqual(UNTOUCHED);
      // A second DELETE of the now terminal task changes nothing.
      expect((await ctx.request("DELETE", `tasks/${id}`)).status).toBe(204);
      expect(await row(ctx, id)).toEqual(r);
    });
  });

  test.each(["hangs", "ignoresAbort"] as const)(
    "an actor that ignores the abort (%s) is terminated after the grace period: the task ends cancelled, the thread is replaced and the replacement runs the next task",
    async (mode) => {
      const agentId = await agentFor(ctx, mode);
      await withEngine(await engineFor(ctx), async (engine) => {
        const id = await refresh(ctx, agentId);
        const first = await engine.waitForEvent(started(id));
        const stuckWorker = first.type === "task_started" ? first.workerId : "";
        // Queued behind the stuck task: only a new thread can run it.
        const next = await refresh(ctx, await agentFor(ctx));
        const t0 = performance.now();
        expect((await ctx.request("DELETE", `tasks/${id}`)).status).toBe(204);
        const done = await engine.waitForEvent(finished(id));
        const elapsed = performance.now() - t0;
        // Settled by the supervisor after terminating the thread, not by the actor.
        expect(done).toMatchObject({ outcome: "cancelled", workerId: "supervisor" });
        expect(elapsed).toBeGreaterThanOrEqual(ctx.config.cancelGraceMs - 50);
        expect(await row(ctx, id)).toMatchObject({ status: "cancelled", cancellation_requested: true, lease_token: null });
        await engine.waitForEvent((e) => e.type === "worker_replaced" && e.workerId === stuckWorker);
        // Terminating on purpose is not a crash.
        expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
        const nextStart = await engine.waitForEvent(started(next));
        expect(nextStart.type === "task_started" && nextStart.workerId).not.toBe(stuckWorker);
        expect(await engine.waitForEvent(finished(next))).toMatchObject({ outcome: "completed" });
        expect(await historyRows(ctx, id)).toBe(0);
        expect(await figures(ctx, agentId)).toEqual(UNTOUCHED);
      });
    },
  );
});

describe("timeouts", () => {
  test("a slow 5000 ms task past its 300 ms time limit ends timeout", async () => {
    const agentId = await agentFor(ctxShort, "slow", 5000);
    await withEngine(await engineFor(ctxShort), async (engine) => {
      const id = await refresh(ctxShort, agentId);
      expect((await row(ctxShort, id)).timeout_ms).toBe(SHORT_TIMEOUT_MS);
      await engine.waitForEvent(started(id));
      const done = await engine.waitForEvent(finished(id));
      expect(done).toMatchObject({ outcome: "timed_out" });
      expect(await waitForStatus(ctxShort, id, ["timeout"], 2000)).toBe("timeout");
      const r = await row(ctxShort, id);
      expect(r).toMatchObject({ status: "timeout", error: "task exceeded its time limit", attempt: 1, result: null });
      // Not before its limit, and long before the task's own 5 s.
      const ranMs = await runMs(ctxShort, id);
      expect(ranMs).toBeGreaterThanOrEqual(SHORT_TIMEOUT_MS);
      expect(ranMs).toBeLessThan(4000);
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
      expect(await historyRows(ctxShort, id)).toBe(0);
      expect(await figures(ctxShort, agentId)).toEqual(UNTOUCHED);
    });
  });

  test("a hanging task past its time limit ends timeout and its thread is terminated and replaced", async () => {
    const agentId = await agentFor(ctxShort, "hangs");
    await withEngine(await engineFor(ctxShort), async (engine) => {
      const id = await refresh(ctxShort, agentId);
      const first = await engine.waitForEvent(started(id));
      const stuckWorker = first.type === "task_started" ? first.workerId : "";
      const done = await engine.waitForEvent(finished(id));
      expect(done).toMatchObject({ outcome: "timed_out", workerId: "supervisor" });
      expect(await row(ctxShort, id)).toMatchObject({ status: "timeout", error: "task exceeded its time limit", attempt: 1 });
      // Told to stop at its limit, terminated after the grace period on top.
      expect(await runMs(ctxShort, id)).toBeGreaterThanOrEqual(SHORT_TIMEOUT_MS + ctxShort.config.cancelGraceMs);
      await engine.waitForEvent((e) => e.type === "worker_replaced" && e.workerId === stuckWorker);
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
      expect(await historyRows(ctxShort, id)).toBe(0);
      // The replacement works.
      const next = await refresh(ctxShort, await agentFor(ctxShort));
      expect(await engine.waitForEvent(finished(next))).toMatchObject({ outcome: "completed" });
    });
  });
});

describe("crashes", () => {
  test.each(["exits", "crashes"] as const)(
    "a thread crash (%s) is retried, and after maxAttempts the task ends failed with an error naming the crash, attempt = maxAttempts",
    async (mode) => {
      expect(ctx.config.maxAttempts).toBe(3);
      const agentId = await agentFor(ctx, mode);
      await withEngine(await engineFor(ctx), async (engine) => {
        const id = await refresh(ctx, agentId);
        expect(await waitForStatus(ctx, id, ["failed", "completed", "cancelled", "timeout"])).toBe("failed");
        const r = await row(ctx, id);
        expect(r.attempt).toBe(3);
        expect(r.max_attempts).toBe(3);
        expect(String(r.error)).toMatch(/crash/);
        expect(String(r.error)).toMatch(/gave up after attempts/);
        expect(r.lease_token).toBeNull();
        expect(r.completed_at).not.toBeNull();
        expect(count(engine, started(id))).toBe(3);
        expect(count(engine, (e) => e.type === "worker_crashed")).toBe(3);
        // Every crashed thread is replaced (the third replacement may still be starting).
        await engine.waitForEvent(() => count(engine, (e) => e.type === "worker_replaced") >= 3);
        expect(await historyRows(ctx, id)).toBe(0);
        expect(await figures(ctx, agentId)).toEqual(UNTOUCHED);
        // The pool still works.
        const next = await refresh(ctx, await agentFor(ctx));
        expect(await engine.waitForEvent(finished(next))).toMatchObject({ outcome: "completed" });
      });
    },
  );

  test("restart intensity: with restartMax 2, the third crash within the window calls onFatal and no thread is restarted", async () => {
    const agentId = await agentFor(ctx, "exits");
    let fatal!: (e: Error) => void;
    const fatalCalled = new Promise<Error>((resolve) => (fatal = resolve));
    let fatalCalls = 0;
    const engine = await engineFor(ctx, { restartMax: 2, restartWindowMs: 60_000 }, (e) => {
      fatalCalls++;
      fatal(e);
    });
    await withEngine(engine, async () => {
      await refresh(ctx, agentId);
      await refresh(ctx, agentId);
      const error = await within(fatalCalled, 15_000, "onFatal");
      expect(error.message).toMatch(/restart intensity exceeded/);
      expect(fatalCalls).toBe(1);
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(3);
      expect(count(engine, (e) => e.type === "worker_replaced")).toBe(2);
      expect(engine.supervisor.stats().workers).toBe(0);
    });
  });
});

describe("leases", () => {
  test("lease fencing: a worker whose lease token was changed cannot complete the task; the reconciler's lease expiry retries it", async () => {
    const agentId = await agentFor(ctx, "slow", 500);
    await withEngine(await engineFor(ctx), async (engine) => {
      const id = await refresh(ctx, agentId);
      await engine.waitForEvent(started(id));
      const [stolen] = await ctx.database.db.execute<{ lease_token: string }>(sql`
        update background_tasks set lease_token = gen_random_uuid()
        where task_id = ${id} and status = 'running' returning lease_token`);
      expect(stolen).toBeDefined();
      // The worker finishes its work, but its completion is refused: it hands the task back.
      const released = await engine.waitForEvent(finished(id));
      expect(released).toMatchObject({ outcome: "released" });
      const r = await row(ctx, id);
      expect(r.status).not.toBe("completed");
      expect(r.result).toBeNull();
      expect(r.completed_at).toBeNull();
      if (r.status === "running") expect(r.lease_token).toBe(stolen!.lease_token);
      expect(await historyRows(ctx, id)).toBe(0);
      expect(await figures(ctx, agentId)).toEqual(UNTOUCHED);
      // Nobody renews the stolen lease: it lapses, the reconciler puts the task back, a worker runs it again.
      expect(await waitForStatus(ctx, id, ["completed", "failed", "cancelled", "timeout"])).toBe("completed");
      const after = await row(ctx, id);
      expect(after.attempt).toBe(2);
      expect(count(engine, started(id))).toBe(2);
      expect(await historyRows(ctx, id)).toBe(1);
      expect(await figures(ctx, agentId)).toMatchObject({ coverage_percent: 10, total_documents: 2, total_chunks: 3 });
    });
  });
});

describe("deleting an agent", () => {
  test("while its refresh runs and another is pending: both tasks go with it, the running one stops at the next lease renewal, nothing is written for it, and the engine runs the next task", async () => {
    const doomed = await agentFor(ctx, "slow", 5000);
    await withEngine(await engineFor(ctx), async (engine) => {
      const runningId = await refresh(ctx, doomed);
      // Under way: the handler has read its agent and reported a first step.
      await engine.waitForEvent((e) => e.type === "task_progress" && e.taskId === runningId);
      const pendingId = await refresh(ctx, doomed); // queued behind it (one worker)
      expect((await ctx.request("DELETE", `agents/${doomed}`)).status).toBe(204);
      expect((await ctx.request("GET", `tasks/${runningId}`)).status).toBe(404);
      expect((await ctx.request("GET", `tasks/${pendingId}`)).status).toBe(404);

      // Its lease matches no row at the next renewal (every lease/3 = 500 ms): the supervisor stops
      // the actor, which writes nothing, long before the task's 5 s of work would end.
      expect(await within(engine.waitForEvent(finished(runningId)), 2500, "the deleted agent's task to stop")).toMatchObject({ outcome: "released" });
      // The pending id still in Redis is popped, matches no row when claimed, and is dropped.
      const next = await refresh(ctx, await agentFor(ctx));
      expect(await engine.waitForEvent(finished(next))).toMatchObject({ outcome: "completed" });
      expect(count(engine, started(pendingId))).toBe(0);
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
      const [left] = await ctx.database.db.execute<{ tasks: number; history: number }>(sql`
        select (select count(*)::int from background_tasks where agent_id = ${doomed}) as tasks,
               (select count(*)::int from coverage_history where agent_id = ${doomed}) as history`);
      expect(left).toEqual({ tasks: 0, history: 0 });
    });
  });
  test("while an actor that ignores stops runs its refresh: the thread is terminated after the grace period and nothing is written", async () => {
    const doomed = await agentFor(ctx, "hangs");
    await withEngine(await engineFor(ctx), async (engine) => {
      const id = await refresh(ctx, doomed);
      const first = await engine.waitForEvent(started(id));
      const stuckWorker = first.type === "task_started" ? first.workerId : "";
      // Delete once the handler has read its agent and hangs (it reports 10 % first).
      await engine.waitForEvent((e) => e.type === "task_progress" && e.taskId === id);
      expect((await ctx.request("DELETE", `agents/${doomed}`)).status).toBe(204);
      expect(await within(engine.waitForEvent(finished(id)), 3000, "the hung task to be settled")).toMatchObject({ outcome: "released", workerId: "supervisor" });
      await engine.waitForEvent((e) => e.type === "worker_replaced" && e.workerId === stuckWorker);
      expect(count(engine, (e) => e.type === "worker_crashed")).toBe(0);
      const next = await refresh(ctx, await agentFor(ctx));
      expect(await engine.waitForEvent(finished(next))).toMatchObject({ outcome: "completed" });
    });
  });
});
