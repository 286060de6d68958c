/**
 * The enqueue path's Redis cost: the 202 of a refresh and GET /tasks/{id} take
 * the queue position and the completion estimate from one Redis round trip
 * (one script: src/queue/estimate.ts), and the figures are right.
 *
 * Round trips are counted on the app's own ioredis client: every command it
 * sends is recorded, and a command sent after a reply to an earlier one of
 * the same request had arrived starts a new round trip.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import type Redis from "ioredis";
import type { RedisClient } from "../../src/queue/redisClient.ts";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { QueueEstimator } from "../../src/queue/estimate.ts";
import { newTaskId } from "../../src/core/tasks.ts";

let ctx: TestContext;
let root: string;
const keys = () => queueKeys(ctx.config.redisPrefix);

beforeAll(async () => {
  ctx = await createTestContext();
  root = uuid();
  await postTaxonomy(ctx, "1.0.0", [{ node_id: root, label: "root" }]);
});
afterAll(() => ctx.close());

const newAgent = async () => (await postAgent(ctx, { taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id;

interface Traffic {
  /** Command names in the order they were sent. */
  commands: string[];
  /** Arguments of each command, as sent. */
  args: unknown[][];
  /** Waves of commands each sent before any reply of this window had arrived. */
  roundTrips: number;
}

/** Records what `redis` sends while `run` runs. */
async function traffic<T>(client: RedisClient, run: () => Promise<T>): Promise<{ result: T } & Traffic> {
  // The test context's Redis is one server here: its sendCommand is the one to wrap.
  const redis = client as Redis;
  const recorded: Traffic = { commands: [], args: [], roundTrips: 0 };
  let replied = 0;
  let repliesAtLastWave = -1;
  const original = redis.sendCommand;
  type Cmd = { name: string; args: unknown[]; promise: Promise<unknown> };
  redis.sendCommand = function (this: Redis, command: Cmd, ...rest: unknown[]) {
    // The live-event publish of a new task (src/queue/taskEvents.ts) is fire-and-forget, sent on a
    // later tick, and not part of the answer: it is left out of the count.
    if (command.args.some((a) => String(a).includes(":task-events"))) return (original as (...a: unknown[]) => unknown).call(this, command, ...rest);
    recorded.commands.push(command.name);
    recorded.args.push([...command.args]);
    // A new wave starts when something came back since the current one went out.
    if (recorded.roundTrips === 0 || replied > repliesAtLastWave) {
      recorded.roundTrips++;
      repliesAtLastWave = replied;
    }
    command.promise.then(
      () => replied++,
      () => replied++,
    );
    return (original as (...a: unknown[]) => unknown).call(this, command, ...rest);
  } as typeof redis.sendCommand;
  try {
    const result = await run();
    return { result, ...recorded };
  } finally {
    redis.sendCommand = original;
  }
}

const ESTIMATE_READS = ["zcard", "zrank", "lrange", "hgetall", "zscore", "hget", "hvals"];

describe("one Redis round trip for position and ETA", () => {
  test("GET /tasks/{id} of a pending task: one command, one round trip, every key declared, under one hash tag", async () => {
    const agentId = await newAgent();
    const task = (await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority: "low" } })).body;
    const seen = await traffic(ctx.redis, () => ctx.request("GET", `tasks/${task.task_id}`));
    expect(seen.result.status).toBe(200);
    expect(seen.result.body.queue_position).toBe(1);
    expect(typeof seen.result.body.estimated_completion_at).toBe("string");
    expect(seen.commands).toEqual(["evalsha"]);
    expect(seen.roundTrips).toBe(1);
    // EVALSHA sha 5 KEYS...: all five keys are passed in KEYS and share the {coverage} hash tag.
    const [, numberOfKeys, ...rest] = seen.args[0]!;
    expect(Number(numberOfKeys)).toBe(5);
    const declared = rest.slice(0, 5) as string[];
    expect(declared).toEqual([...keys().queues, keys().runtimes, keys().capacity]);
    for (const k of declared) expect(k).toContain("{coverage}");
    // The agent-scoped status costs the same.
    const scoped = await traffic(ctx.redis, () => ctx.request("GET", `agents/${agentId}/coverage/status/${task.task_id}`));
    expect(scoped.commands).toEqual(["evalsha"]);
    expect(scoped.roundTrips).toBe(1);
    await ctx.request("DELETE", `tasks/${task.task_id}`);
  });

  test("the 202 of a new task: the dispatch and the estimate go out together (one round trip) and the estimate sees the dispatch", async () => {
    const agentId = await newAgent();
    const seen = await traffic(ctx.redis, () => ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority: "high" } }));
    expect(seen.result.status).toBe(202);
    expect(seen.commands.filter((c) => ESTIMATE_READS.includes(c))).toEqual([]);
    expect(seen.commands).toEqual(["zadd", "evalsha"]);
    expect(seen.roundTrips).toBe(1);
    // The script ran after the ZADD: the new task has its place.
    expect(seen.result.body.queue_position).toBe(1);
    // A deduplicated 202 (the agent's pending task): no dispatch, the one script.
    const again = await traffic(ctx.redis, () => ctx.request("POST", `agents/${agentId}/coverage/refresh`));
    expect(again.result.status).toBe(202);
    expect(again.result.body.task_id).toBe(seen.result.body.task_id);
    expect(again.commands).toEqual(["evalsha"]);
    expect(again.roundTrips).toBe(1);
    await ctx.request("DELETE", `tasks/${seen.result.body.task_id}`);
  });
});

describe("a burst of enqueues shares its pipelines", () => {
  test("refreshes whose INSERT was group-committed together send their ZADDs and estimates in one pipeline, not two each; each still sees its own place", async () => {
    const agents = await Promise.all(Array.from({ length: 12 }, () => newAgent()));
    const redis = ctx.redis as Redis;
    const original = redis.pipeline;
    let pipelines = 0;
    redis.pipeline = function (this: Redis, ...a: Parameters<Redis["pipeline"]>) {
      pipelines++;
      return original.apply(this, a);
    } as typeof redis.pipeline;
    let answers: { status: number; body: { task_id: string; queue_position: number | null } }[];
    try {
      answers = await Promise.all(agents.map((a) => ctx.request("POST", `agents/${a}/coverage/refresh`, { body: { priority: "low" } })));
    } finally {
      redis.pipeline = original;
    }
    for (const a of answers) expect(a.status).toBe(202);
    // Two pipelines per request before; now at most two per INSERT statement (a lone first one,
    // then the rest), and concurrent requests share INSERT statements.
    expect(pipelines).toBeLessThan(agents.length);
    // Every task is queued, and each answer's position is its own: distinct, among the queued.
    const positions = answers.map((a) => a.body.queue_position);
    expect(new Set(positions).size).toBe(agents.length);
    for (const p of positions) expect(p).toBeGreaterThanOrEqual(1);
    for (const a of answers) expect(await ctx.redis.zscore(keys().queue("low"), a.body.task_id)).not.toBeNull();
    for (const a of answers) await ctx.request("DELETE", `tasks/${a.body.task_id}`);
  });
});

describe("when Redis refuses the placement", () => {
  test("a command's error is that request's alone: the task is still recorded and answered 202, without a position", async () => {
    const agentId = await newAgent();
    // A queue key of the wrong type makes both the ZADD and the script's ZRANK fail.
    await ctx.redis.set(keys().queue("medium"), "not a sorted set");
    try {
      const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority: "medium" } });
      expect(res.status).toBe(202);
      expect(res.body.status).toBe("pending");
      expect(res.body.queue_position).toBeNull();
      expect(res.body.estimated_completion_at).toBeNull();
      // PostgreSQL has it (the reconciler dispatches it once Redis takes it again).
      const [row] = await ctx.database.db.execute<{ status: string }>(sql`select status from background_tasks where task_id = ${res.body.task_id}`);
      expect(row?.status).toBe("pending");
      await ctx.request("DELETE", `tasks/${res.body.task_id}`);
    } finally {
      await ctx.redis.del(keys().queue("medium"));
    }
  });
});

describe("the figures from the one script", () => {
  const clear = async () => {
    await ctx.redis.del(...keys().queues, keys().runtimes, keys().capacity);
    await ctx.database.db.execute(sql`delete from background_tasks`);
  };

  test("position counts every higher queue; the ETA uses the average run time and the live capacity only", async () => {
    await clear();
    const k = keys();
    // Two high and one medium task ahead of ours (ids only: the script reads Redis, not PostgreSQL).
    const now = Date.now();
    await ctx.redis.zadd(k.queue("high"), now, newTaskId(), now + 1, newTaskId());
    await ctx.redis.zadd(k.queue("medium"), now, newTaskId());
    await ctx.redis.zadd(k.queue("low"), now - 10, newTaskId()); // an older low task: ahead too
    await ctx.redis.rpush(k.runtimes, "1000", "3000", "not-a-number");
    await ctx.redis.hset(k.capacity, {
      live: JSON.stringify({ workers: 2, busy: 1, expires: now + 60_000 }),
      dead: JSON.stringify({ workers: 50, busy: 0, expires: now - 1 }),
      broken: "{",
    });
    const agentId = await newAgent();
    const before = Date.now();
    const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority: "low" } });
    expect(res.status).toBe(202);
    // 2 high + 1 medium + 1 older low ahead.
    expect(res.body.queue_position).toBe(5);
    // ahead = 4 queued + 1 busy = 5, 2 workers: floor(5 / 2) + 1 = 3 slots of the 2000 ms average.
    const eta = Date.parse(res.body.estimated_completion_at);
    expect(eta - before).toBeGreaterThanOrEqual(6000 - 50);
    expect(eta - Date.now()).toBeLessThanOrEqual(6000 + 50);
    const view = await ctx.request("GET", `tasks/${res.body.task_id}`);
    expect(view.body.queue_position).toBe(5);
  });

  test("a running task's ETA is its start plus the average run time; it has no position", async () => {
    await clear();
    await ctx.redis.rpush(keys().runtimes, "4000", "6000");
    const agentId = await newAgent();
    const task = (await ctx.request("POST", `agents/${agentId}/coverage/refresh`)).body;
    await ctx.redis.zrem(keys().queue("medium"), task.task_id);
    const startedAt = new Date(Date.now() - 1000);
    await ctx.database.db.execute(
      sql`update background_tasks set status = 'running', started_at = ${startedAt.toISOString()}::timestamptz, attempt = 1 where task_id = ${task.task_id}`,
    );
    const seen = await traffic(ctx.redis, () => ctx.request("GET", `tasks/${task.task_id}`));
    expect(seen.result.body.status).toBe("running");
    expect(seen.result.body.queue_position).toBeNull();
    expect(Date.parse(seen.result.body.estimated_completion_at)).toBe(startedAt.getTime() + 5000);
    expect(seen.commands).toEqual(["evalsha"]);
  });

  test("no samples and no live supervisor: one default run time per slot, one worker assumed", async () => {
    await clear();
    const estimator = new QueueEstimator(ctx.redis, keys());
    expect(await estimator.read(null, 20)).toEqual({ position: null, runtimesMs: [], capacity: { workers: 0, busy: 0 } });
    expect(await estimator.read({ taskId: newTaskId(), priority: "high" }, 20)).toMatchObject({ position: null });
    const agentId = await newAgent();
    const before = Date.now();
    const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh`);
    expect(res.body.queue_position).toBe(1);
    const eta = Date.parse(res.body.estimated_completion_at) - before;
    expect(eta).toBeGreaterThanOrEqual(1000 - 50);
    expect(eta).toBeLessThanOrEqual(1000 + (Date.now() - before) + 50);
  });

  test("only the newest samples count (the script returns at most the number asked for)", async () => {
    await clear();
    await ctx.redis.rpush(keys().runtimes, ...Array.from({ length: 30 }, (_, i) => String(i < 20 ? 100 : 100_000)));
    const estimator = new QueueEstimator(ctx.redis, keys());
    expect((await estimator.read(null, 20)).runtimesMs).toEqual(Array.from({ length: 20 }, () => 100));
    expect((await estimator.read(null, 0)).runtimesMs).toEqual([]);
  });
});
