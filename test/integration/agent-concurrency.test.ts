/**
 * max_concurrent_refreshes (issue 11, item 6): the field through the API, the claim statement
 * that enforces it (race-free across claimers), the Redis park where deferred tasks wait, the
 * reconciler's view of parked tasks, and a real engine keeping an agent at its limit while other
 * agents' tasks go past it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { FAST_ENGINE, eventually, startTestEngine } from "../helpers/engine.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { claimBatch, claimTask } from "../../src/db/tasks/claims.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { limitedAgentsWithRoom } from "../../src/db/tasks/recovery.ts";
import { openDatabase } from "../../src/db/client.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { Dispatcher } from "../../src/queue/dispatch.ts";
import { CREDIT_TTL_MS, PARK_TTL_MS, Parking } from "../../src/queue/parking.ts";
import { Reconciler } from "../../src/supervisor/reconciler.ts";
import type { Priority } from "../../src/core/tasks.ts";
import { maxOverlap } from "../helpers/intervals.ts";
import { samples } from "../helpers/metrics.ts";
import { Actor, type ActorDeps } from "../../workers/actor.ts";
import { openActorDeps } from "../../workers/actorDeps.ts";
import type { WorkerMessage } from "../../src/protocol/messages.ts";
import { actorSettings, gatedHandler } from "../helpers/actors.ts";

let ctx: TestContext;
let root: string;
let dispatcher: Dispatcher;
let parking: Parking;
const db = () => ctx.database.db;

beforeAll(async () => {
  ctx = await createTestContext({ ...FAST_ENGINE, taskTimeoutMs: 60_000 });
  root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "r" }]);
  dispatcher = new Dispatcher(ctx.redis, queueKeys(ctx.config.redisPrefix));
  parking = dispatcher.parking;
});
afterAll(() => ctx.close());

const newAgent = async (limit: number | null, fixture?: { mode: string; ms?: number }) =>
  (
    await postAgent(ctx, {
      taxonomy_node_ids: [root],
      ...(limit === null ? {} : { max_concurrent_refreshes: limit }),
      features_config: fixture ? { fixture } : {},
    })
  ).agent_id;

/** Pending tasks written straight to PostgreSQL (no Redis), oldest first. */
const pendingTasks = async (agentId: string, n: number, priority: Priority = "medium") => {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const outcome = await insertTask(db(), taskInput(agentId, { priority }));
    ids.push(outcome.task.task_id);
  }
  return ids;
};

const runningOf = async (agentId: string) =>
  (
    await db().execute<{ n: number }>(sql`select count(*)::int as n from background_tasks where agent_id = ${agentId} and status = 'running'`)
  )[0]!.n;

const finish = (taskIds: string[]) =>
  db().execute(sql`update background_tasks set status = 'completed', completed_at = now(), lease_token = null where task_id = any(${`{${taskIds.join(",")}}`}::text[])`);

const forceRefresh = async (agentId: string, priority: Priority = "medium") => {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh?force=true`, { body: { priority } });
  expect(res.status).toBe(202);
  return res.body.task_id as string;
};

test("max_concurrent_refreshes on the agent: null by default, set at create, changed and lifted by PATCH, in the OpenAPI schema", async () => {
  const plain = await postAgent(ctx, { taxonomy_node_ids: [root] });
  expect((await ctx.request("GET", `agents/${plain.agent_id}`)).body.max_concurrent_refreshes).toBeNull();

  const created = await ctx.request("POST", "agents/from-taxonomy", { body: { name: "limited", taxonomy_node_ids: [root], max_concurrent_refreshes: 3 } });
  expect(created.status).toBe(201);
  expect(created.body.max_concurrent_refreshes).toBe(3);
  const id = created.body.agent_id as string;

  const patched = await ctx.request("PATCH", `agents/${id}`, { body: { max_concurrent_refreshes: 10_000 } });
  expect(patched.status).toBe(200);
  expect(patched.body.max_concurrent_refreshes).toBe(10_000);
  // Other fields leave it alone.
  expect((await ctx.request("PATCH", `agents/${id}`, { body: { name: "renamed" } })).body.max_concurrent_refreshes).toBe(10_000);
  const lifted = await ctx.request("PATCH", `agents/${id}`, { body: { max_concurrent_refreshes: null } });
  expect(lifted.body.max_concurrent_refreshes).toBeNull();
  expect((await ctx.request("GET", `agents/${id}`)).body.max_concurrent_refreshes).toBeNull();
  const listed = (await ctx.request("GET", "agents?max_results=100")).body.agents.find((a: { agent_id: string }) => a.agent_id === id);
  expect(listed.max_concurrent_refreshes).toBeNull();

  const spec = (await ctx.request("GET", "/swagger/json", { anonymous: true })).body;
  const schemaText = JSON.stringify(spec);
  expect(schemaText).toContain("max_concurrent_refreshes");
});

test("max_concurrent_refreshes out of range or not an integer: 400 validation_error naming the field, nothing changed", async () => {
  const id = await newAgent(2);
  // (A numeric string such as "2" is read as the number, as for every integer field of the API.)
  for (const bad of [0, -1, 1.5, 10_001, "two", true, {}, [2]]) {
    for (const res of [
      await ctx.request("PATCH", `agents/${id}`, { body: { max_concurrent_refreshes: bad } }),
      await ctx.request("POST", "agents/from-taxonomy", { body: { name: "x", taxonomy_node_ids: [root], max_concurrent_refreshes: bad } }),
    ]) {
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("validation_error");
      expect(res.body.error.message).toContain("max_concurrent_refreshes");
    }
  }
  expect((await ctx.request("GET", `agents/${id}`)).body.max_concurrent_refreshes).toBe(2);
  // The database refuses it too, whatever writes it.
  const refused = await db()
    .execute(sql`update agents set max_concurrent_refreshes = 0 where agent_id = ${id}`)
    .then(() => null, (error: { cause?: { constraint_name?: string } }) => error.cause?.constraint_name);
  expect(refused).toContain("agents_max_concurrent_refreshes_range");
});

test("a claim takes at most the room an agent has left; the rest come back deferred with their priority and score; other agents' ids in the batch are claimed", async () => {
  const limited = await newAgent(2);
  const free = await newAgent(null);
  const mine = await pendingTasks(limited, 4);
  const others = await pendingTasks(free, 2);
  const batch = await claimBatch(db(), [mine[0]!, others[0]!, mine[1]!, mine[2]!, others[1]!, mine[3]!], "w1", 60_000);
  expect(batch.claims.map((c) => c.taskId)).toEqual([mine[0]!, others[0]!, mine[1]!, others[1]!]);
  expect(batch.claims.map((c) => c.limited)).toEqual([true, false, true, false]);
  expect(batch.deferred.map((d) => d.taskId)).toEqual([mine[2]!, mine[3]!]);
  const [row] = await db().execute<{ ms: number }>(sql`select floor(extract(epoch from created_at) * 1000)::float8 as ms from background_tasks where task_id = ${mine[2]!}`);
  expect(batch.deferred[0]).toEqual({ taskId: mine[2]!, agentId: limited, priority: "medium", score: Number(row!.ms) });
  expect(await runningOf(limited)).toBe(2);

  // Full: nothing more, the deferred ids still pending.
  const again = await claimBatch(db(), [mine[2]!, mine[3]!], "w2", 60_000);
  expect(again.claims).toEqual([]);
  expect(again.deferred.map((d) => d.taskId)).toEqual([mine[2]!, mine[3]!]);
  // One ends: exactly one place.
  await finish([mine[0]!]);
  const third = await claimBatch(db(), [mine[3]!, mine[2]!], "w2", 60_000);
  expect(third.claims.map((c) => c.taskId)).toEqual([mine[3]!]);
  expect(third.deferred.map((d) => d.taskId)).toEqual([mine[2]!]);
  // claimTask (one id, no park) leaves an over-limit task pending.
  expect(await claimTask(db(), mine[2]!, "w3", 60_000)).toBeNull();
  const [status] = await db().execute<{ status: string }>(sql`select status from background_tasks where task_id = ${mine[2]!}`);
  expect(status!.status).toBe("pending");
});

test("claimers racing for an agent's last place: across 8 connections claiming at the same moment, never more than the limit run", async () => {
  const limit = 2;
  const agentId = await newAgent(limit);
  const pools = Array.from({ length: 8 }, () => openDatabase(ctx.config.databaseUrl, { max: 1 }));
  try {
    // Warm every connection so the claims below start together.
    await Promise.all(pools.map((p) => p.db.execute(sql`select 1`)));
    for (let round = 0; round < 5; round++) {
      const ids = await pendingTasks(agentId, pools.length * 2);
      const batches = await Promise.all(pools.map((p, i) => claimBatch(p.db, ids.slice(i * 2, i * 2 + 2), `racer-${i}`, 60_000)));
      const claimed = batches.flatMap((b) => b.claims.map((c) => c.taskId));
      expect(claimed.length).toBe(limit);
      expect(await runningOf(agentId)).toBe(limit);
      expect(batches.flatMap((b) => b.deferred).length).toBe(ids.length - limit);
      await finish(claimed);
      await db().execute(sql`delete from background_tasks where agent_id = ${agentId} and status = 'pending'`);
    }
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}, 30_000);

test("the park: released highest priority then oldest first, back into its queue at its old score; releaseAll, remove, and an expiry", async () => {
  const agentId = uuid();
  const keys = queueKeys(ctx.config.redisPrefix);
  await parking.park([
    { taskId: "t-low-old", agentId, priority: "low", score: 1_000 },
    { taskId: "t-med-new", agentId, priority: "medium", score: 3_000 },
    { taskId: "t-high-new", agentId, priority: "high", score: 5_000 },
    { taskId: "t-med-old", agentId, priority: "medium", score: 2_000 },
  ]);
  expect(await parking.count(agentId)).toBe(4);
  const ttl = await ctx.redis.pttl(keys.parked(agentId));
  expect(ttl).toBeGreaterThan(PARK_TTL_MS - 60_000);
  expect(ttl).toBeLessThanOrEqual(PARK_TTL_MS);
  expect(await parking.parkedAmong([{ taskId: "t-med-old", agentId }, { taskId: "nope", agentId }])).toEqual([true, false]);

  expect(await parking.release(agentId, 2)).toEqual(["t-high-new", "t-med-old"]);
  expect(await ctx.redis.zscore(keys.queue("high"), "t-high-new")).toBe("5000");
  expect(await ctx.redis.zscore(keys.queue("medium"), "t-med-old")).toBe("2000");
  expect(await parking.release(agentId, 0)).toEqual([]);
  expect(await parking.remove(agentId, "t-med-new")).toBe(true);
  expect(await parking.releaseAll(agentId)).toEqual(["t-low-old"]);
  expect(await ctx.redis.zscore(keys.queue("low"), "t-low-old")).toBe("1000");
  expect(await parking.count(agentId)).toBe(0);
  await parking.park([]);
  expect(await parking.parkedAmong([])).toEqual([]);
  for (const [id, p] of [["t-high-new", "high"], ["t-med-old", "medium"], ["t-low-old", "low"]] as const) await dispatcher.remove(id, p);
});

test("a place freed while the park is empty leaves a credit: the deferral on its way is sent straight back to its queue; a reconciler release leaves none", async () => {
  const agentId = uuid();
  const keys = queueKeys(ctx.config.redisPrefix);
  // The reconciler's and the PATCH's releases leave no credit.
  expect(await parking.release(agentId, 3)).toEqual([]);
  expect(await ctx.redis.exists(keys.parkCredit(agentId))).toBe(0);
  // An ending's release does, for a short while.
  expect(await parking.release(agentId, 1, { credit: true })).toEqual([]);
  expect(await ctx.redis.get(keys.parkCredit(agentId))).toBe("1");
  const ttl = await ctx.redis.pttl(keys.parkCredit(agentId));
  expect(ttl).toBeGreaterThan(0);
  expect(ttl).toBeLessThanOrEqual(CREDIT_TTL_MS);
  // The deferral that was on its way: one of its two ids goes straight back (the oldest), the credit is spent.
  const other = uuid();
  const moved = await parking.park([
    { taskId: "late-new", agentId, priority: "medium", score: 9_000 },
    { taskId: "late-old", agentId, priority: "medium", score: 8_000 },
    { taskId: "someone-else", agentId: other, priority: "low", score: 1 },
  ]);
  expect(moved).toEqual(["late-old"]);
  expect(await ctx.redis.zscore(keys.queue("medium"), "late-old")).toBe("8000");
  expect(await parking.count(agentId)).toBe(1);
  expect(await parking.count(other)).toBe(1);
  expect(await ctx.redis.exists(keys.parkCredit(agentId))).toBe(0);
  // No credit left: the next park parks.
  expect(await parking.park([{ taskId: "later", agentId, priority: "medium", score: 9_500 }])).toEqual([]);
  await dispatcher.remove("late-old", "medium");
  await ctx.redis.del(keys.parked(agentId), keys.parked(other));
});

test("the reconciler: a parked task counts as queued; parked tasks of an agent with room are released; a task whose park Redis lost is re-dispatched", async () => {
  const agentId = await newAgent(1);
  const [first, second, third] = await pendingTasks(agentId, 3);
  const claim = await claimBatch(db(), [first!, second!, third!], "w1", 60_000);
  expect(claim.claims.map((c) => c.taskId)).toEqual([first!]);
  await parking.park(claim.deferred);
  await db().execute(sql`update background_tasks set updated_at = now() - interval '1 hour' where agent_id = ${agentId} and status = 'pending'`);
  const reconciler = new Reconciler({ config: ctx.config, database: ctx.database, dispatcher, logger: ctx.logger });

  // Full and parked: nothing to do.
  expect(await limitedAgentsWithRoom(db())).not.toContainEqual({ agent_id: agentId, room: 1 });
  let report = await reconciler.reconcileOnce();
  expect(await parking.count(agentId)).toBe(2);
  expect(await dispatcher.queuedAmong([{ taskId: second!, priority: "medium" }])).toEqual([false]);

  // Its running task ended with nobody releasing a parked one (a thread died, say): the pass does, one per place.
  await finish([first!]);
  expect(await limitedAgentsWithRoom(db())).toContainEqual({ agent_id: agentId, room: 1 });
  report = await reconciler.reconcileOnce();
  expect(report.unparked).toBe(1);
  expect(await dispatcher.queuedAmong([{ taskId: second!, priority: "medium" }])).toEqual([true]);
  expect(await parking.count(agentId)).toBe(1);
  await dispatcher.remove(second!, "medium");

  // Redis lost the park: the task is in no queue and no park, so it is re-dispatched.
  await ctx.redis.del(queueKeys(ctx.config.redisPrefix).parked(agentId));
  report = await reconciler.reconcileOnce();
  expect(report.redispatched).toBeGreaterThanOrEqual(1);
  expect(await dispatcher.queuedAmong([{ taskId: third!, priority: "medium" }, { taskId: second!, priority: "medium" }])).toEqual([true, true]);
  for (const id of [second!, third!]) await dispatcher.remove(id, "medium");
  await db().execute(sql`delete from background_tasks where agent_id = ${agentId}`);
});

test("an agent whose limit is lifted: PATCH puts its parked tasks back in the queues; the reconciler no longer counts its park as queued", async () => {
  const agentId = await newAgent(1);
  const [running, parked, stray] = await pendingTasks(agentId, 3);
  const claim = await claimBatch(db(), [running!, parked!], "w1", 60_000);
  await parking.park(claim.deferred);
  expect(await parking.count(agentId)).toBe(1);
  expect((await ctx.request("PATCH", `agents/${agentId}`, { body: { max_concurrent_refreshes: null } })).status).toBe(200);
  expect(await parking.count(agentId)).toBe(0);
  expect(await dispatcher.queuedAmong([{ taskId: parked!, priority: "medium" }])).toEqual([true]);

  // A park left behind (say the release above failed) no longer hides a task of an unlimited agent.
  await parking.park([{ taskId: stray!, agentId, priority: "medium", score: 1 }]);
  await db().execute(sql`update background_tasks set updated_at = now() - interval '1 hour' where task_id = ${stray!}`);
  await new Reconciler({ config: ctx.config, database: ctx.database, dispatcher, logger: ctx.logger }).reconcileOnce();
  expect(await dispatcher.queuedAmong([{ taskId: stray!, priority: "medium" }])).toEqual([true]);
  for (const id of [parked!, stray!]) await dispatcher.remove(id, "medium");
  await ctx.redis.del(queueKeys(ctx.config.redisPrefix).parked(agentId));
  await db().execute(sql`delete from background_tasks where agent_id = ${agentId}`);
});

test("through a real engine: an agent limited to 2 never runs more than 2 of its 10 slow tasks, and another agent's tasks enqueued behind them finish first", async () => {
  const engine = await startTestEngine(ctx, { workers: 1, concurrency: 6, workerUrl: FIXTURE_WORKERS.scripted });
  try {
    const limited = await newAgent(2, { mode: "slow", ms: 250 });
    const others = await Promise.all(Array.from({ length: 4 }, () => newAgent(null)));
    const deferredBefore = (await ctx.metrics.tasksDeferred.get()).values[0]?.value ?? 0;
    const backlog: string[] = [];
    for (let i = 0; i < 10; i++) backlog.push(await forceRefresh(limited, "high"));
    const behind = await Promise.all(others.map((a) => forceRefresh(a, "high")));

    let mostRunning = 0;
    const rows = await eventually(
      async () => {
        mostRunning = Math.max(mostRunning, await runningOf(limited));
        const r = await db().execute<{ task_id: string; status: string; start: number; end: number | null }>(sql`
          select task_id, status, extract(epoch from started_at) * 1000 as start, extract(epoch from completed_at) * 1000 as end
          from background_tasks where task_id = any(${`{${[...backlog, ...behind].join(",")}}`}::text[])`);
        return r.every((t) => t.status === "completed") ? r : undefined;
      },
      30_000,
      "every task to complete",
    );
    expect(mostRunning).toBeLessThanOrEqual(2);
    const byId = new Map(rows.map((r) => [r.task_id, { start: Number(r.start), end: Number(r.end) }]));
    expect(maxOverlap(backlog.map((id) => byId.get(id)!))).toBe(2);
    // The other agents' tasks did not wait for the backlog: all done before half of it was.
    const backlogEnds = backlog.map((id) => byId.get(id)!.end).sort((a, b) => a - b);
    const lastBehind = Math.max(...behind.map((id) => byId.get(id)!.end));
    expect(lastBehind).toBeLessThan(backlogEnds[4]!);
    // Deferrals are counted, and the parks are empty at the end.
    expect((await ctx.metrics.tasksDeferred.get()).values[0]!.value - deferredBefore).toBeGreaterThanOrEqual(8);
    expect(await parking.count(limited)).toBe(0);
  } finally {
    await engine.stop();
  }
}, 30_000);

/** An actor in this process (its real dependencies), running a handler that waits for the test to open each task's gate. */
function gatedActor(concurrency: number, override: Partial<ActorDeps> = {}) {
  const { handler, open } = gatedHandler({ overall_coverage: 10, total_documents: 1, total_chunks: 1 });
  const settings = actorSettings(ctx.config, concurrency);
  const deps = openActorDeps(`limit-actor-${uuid().slice(0, 8)}`, settings);
  const messages: WorkerMessage[] = [];
  const actor = new Actor("limit-actor", settings, handler, { send: (m) => void messages.push(m) }, { ...deps, ...override });
  const running = actor.run();
  return {
    messages,
    open,
    started: () => messages.flatMap((m) => (m.type === "started" ? [m.taskId] : [])),
    async stop() {
      actor.handle({ type: "drain" });
      await running;
      await deps.close();
    },
  };
}

test("an actor parks what its agent has no room for, pops past it, and takes the next parked task when one of the agent's tasks ends", async () => {
  const limited = await newAgent(1);
  const free = await newAgent(null);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await forceRefresh(limited));
  const other = await forceRefresh(free);
  const h = gatedActor(4);
  try {
    // One of the limited agent's tasks and the other agent's run; two are parked, counted once each.
    await eventually(async () => (h.started().length === 2 && (await parking.count(limited)) === 2 ? true : undefined), 10_000, "two starts, two parked");
    expect(h.started()).toEqual([ids[0]!, other]);
    expect(h.messages.filter((m) => m.type === "deferred")).toEqual([{ type: "deferred", count: 2 }]);
    // The actor does not spin on them: nothing more is claimed while the agent is full.
    h.open([other]);
    await eventually(async () => (h.messages.some((m) => m.type === "completed" && m.taskId === other) ? true : undefined));
    expect(h.started()).toHaveLength(2);
    // Each ending of the limited agent's tasks lets the next one in, oldest first.
    h.open([ids[0]!]);
    await eventually(async () => (h.started().length === 3 ? true : undefined), 10_000, "the second task to start");
    expect(h.started()[2]).toBe(ids[1]!);
    expect(await parking.count(limited)).toBe(1);
    h.open([ids[1]!]);
    await eventually(async () => (h.started().length === 4 ? true : undefined), 10_000, "the third task to start");
    h.open([ids[2]!]);
    await eventually(async () => (h.messages.filter((m) => m.type === "completed").length === 4 ? true : undefined));
    expect(await runningOf(limited)).toBe(0);
    expect(h.messages.filter((m) => m.type === "deferred")).toEqual([{ type: "deferred", count: 2 }]);
  } finally {
    await h.stop();
  }
}, 30_000);

test("an actor whose park or release fails logs it and goes on; the reconciler then runs what was left out", async () => {
  const limited = await newAgent(1);
  const ids = [await forceRefresh(limited), await forceRefresh(limited)];
  const h = gatedActor(2, {
    park: () => Promise.reject(new Error("redis down")),
    releaseParked: () => Promise.reject(new Error("redis down")),
  });
  try {
    await eventually(async () => (h.messages.some((m) => m.type === "log" && m.msg.startsWith("parking deferred tasks failed")) ? true : undefined));
    expect(h.started()).toEqual([ids[0]!]);
    h.open(ids);
    await eventually(async () => (h.messages.some((m) => m.type === "log" && m.msg.startsWith("releasing a parked task failed")) ? true : undefined));
    // The second task is in no queue and no park: the reconciler's job once it is stale.
    await db().execute(sql`update background_tasks set updated_at = now() - interval '1 hour' where task_id = ${ids[1]!}`);
    const report = await new Reconciler({ config: ctx.config, database: ctx.database, dispatcher, logger: ctx.logger }).reconcileOnce();
    expect(report.redispatched).toBeGreaterThanOrEqual(1);
    await eventually(async () => (h.messages.some((m) => m.type === "completed" && m.taskId === ids[1]!) ? true : undefined), 10_000, "the left-out task to run");
  } finally {
    await h.stop();
  }
}, 30_000);

test("DELETE of a parked task takes it out of its agent's park too (a stale parked id would waste the next release)", async () => {
  const agentId = await newAgent(1);
  const [running, parked] = await pendingTasks(agentId, 2);
  const claim = await claimBatch(db(), [running!, parked!], "w1", 60_000);
  await parking.park(claim.deferred);
  expect(await parking.count(agentId)).toBe(1);
  expect((await ctx.request("DELETE", `tasks/${parked!}`)).status).toBe(204);
  expect(await parking.count(agentId)).toBe(0);
  await db().execute(sql`delete from background_tasks where agent_id = ${agentId}`);
});

test("a thread terminated with a limited agent's task on it releases that agent's parked task at once (no reconciler running)", async () => {
  // Two threads: one is wedged by a task that ignores its stop, the other parks the agent's second task.
  const engine = await startTestEngine(ctx, { workers: 2, concurrency: 1, workerUrl: FIXTURE_WORKERS.scripted, reconcile: false });
  try {
    const agentId = await newAgent(1, { mode: "ignoresAbort" });
    const wedged = await forceRefresh(agentId);
    await engine.waitForEvent((e) => e.type === "task_started" && e.taskId === wedged);
    const parked = await forceRefresh(agentId);
    await eventually(async () => ((await parking.count(agentId)) === 1 ? true : undefined), 10_000, "the second task to be parked");
    // The next run computes real coverage.
    expect((await ctx.request("PATCH", `agents/${agentId}`, { body: { features_config: {} } })).status).toBe(200);
    expect(await parking.count(agentId)).toBe(1);
    // Cancelled, it ignores the abort: past the grace period its thread is terminated.
    expect((await ctx.request("DELETE", `tasks/${wedged}`)).status).toBe(204);
    await engine.waitForEvent((e) => e.type === "worker_replaced");
    await eventually(
      async () => ((await db().execute<{ status: string }>(sql`select status from background_tasks where task_id = ${parked}`))[0]!.status === "completed" ? true : undefined),
      10_000,
      "the parked task to run",
    );
    expect(await parking.count(agentId)).toBe(0);
  } finally {
    await engine.stop();
  }
}, 30_000);

test("agentq_tasks_held_by_agent_limit: the pending tasks of agents that run their limit, read at scrape time", async () => {
  const scrape = async () => samples(await ctx.metrics.registry.metrics()).get("agentq_tasks_held_by_agent_limit");
  const before = (await scrape())!;
  const full = await newAgent(1);
  const roomy = await newAgent(3);
  const [running, ...waiting] = await pendingTasks(full, 3);
  await claimBatch(db(), [running!], "w1", 60_000);
  const [roomyRunning] = await pendingTasks(roomy, 2);
  await claimBatch(db(), [roomyRunning!], "w1", 60_000);
  // full: 1 running of 1, 2 pending held; roomy: 1 running of 3, its pending one is not held.
  expect((await scrape())! - before).toBe(waiting.length);
  await finish([running!]);
  expect(await scrape()).toBe(before);
  await db().execute(sql`delete from background_tasks where agent_id = any(${`{${full},${roomy}}`}::uuid[])`);
});
