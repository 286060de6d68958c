/**
 * agentq on a real Redis Cluster (AGENTQ_REDIS_CLUSTER_NODES): three primaries from Debian's
 * redis-server, private to this file (test/helpers/redisCluster.ts), so Redis loss here is a
 * real FLUSHALL of every node. The API context, the in-process engines, their worker threads
 * and the supervisor child processes all connect through ioredis's Cluster.
 *
 * The engine's end-to-end behaviours run as on one server (the same scenario functions):
 * strict priority order, cancel of a running task, kill -9 of a supervisor, and Redis loss.
 * Before them: every name is in one slot as the cluster itself computes it, and pub/sub (the
 * cancel bus, live task events published from a Lua script, API key revocations) crosses the
 * cluster's nodes, and the rate limiter's counter script runs on it.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import type { TestContext } from "../helpers/app.ts";
import { startTestEngine, waitForStatus } from "../helpers/engine.ts";
import { postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { redisClusterService } from "../helpers/redisCluster.ts";
import { priorityOrderScenario } from "../helpers/scenarios.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { openRedis, redisTargetOf } from "../../src/queue/connection.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { keysOfPrefix } from "../../src/queue/prefixKeys.ts";
import { isCluster, type RedisClient } from "../../src/queue/redisClient.ts";
import { publishCancel, subscribeCancels } from "../../src/queue/cancelBus.ts";
import { TaskEventPublisher, TaskEventSubscriber, type TaskEvent } from "../../src/queue/taskEvents.ts";
import { KeyRevocations } from "../../src/queue/keyRevocations.ts";
import { RateLimits } from "../../src/queue/rateLimits.ts";
import { newTaskId } from "../../src/core/tasks.ts";
import { eventually } from "../helpers/engine.ts";
import { samples } from "../helpers/metrics.ts";
import { createCorpus, e2eSuite, enqueue, historyByTask, type Corpus } from "./support.ts";
import { redisLossScenario, supervisorKillScenario } from "./scenarios.ts";

const service = redisClusterService();
let ctx: TestContext;
let corpus: Corpus;
const children = e2eSuite((c) => (ctx = c), { service });
beforeAll(async () => {
  corpus = await createCorpus(ctx);
});

/** Every key and channel name queueKeys gives out (the key builders called with a sample argument). */
function everyName(prefix: string): string[] {
  const keys = queueKeys(prefix);
  return Object.entries(keys).flatMap(([field, value]) => {
    if (field === "pattern") return [];
    if (typeof value === "string") return [value];
    if (Array.isArray(value)) return value.map(String);
    return [(value as (arg: string) => string)("high")];
  });
}

describe("on a 3-primary Redis Cluster", () => {
  test("the context's connection is a Cluster client over three primaries, and every key and channel is in one slot by CLUSTER KEYSLOT", async () => {
    expect(isCluster(ctx.redis)).toBe(true);
    if (!isCluster(ctx.redis)) return;
    expect(ctx.redis.nodes("master").length).toBe(3);
    const names = everyName(ctx.config.redisPrefix);
    const slots = await Promise.all(names.map((name) => ctx.redis.call("CLUSTER", "KEYSLOT", name) as Promise<number>));
    expect(new Set(slots)).toEqual(new Set([slots[0]!]));
    // The slot the unit test computes with CRC16 (test/unit/keys-slot.test.ts).
    expect(slots[0]).toBe(9008);
  });

  test("pub/sub crosses the cluster: the cancel bus, live task events (PUBLISH inside the batch script) and API key revocations reach other connections", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    const target = redisTargetOf(ctx.config);
    const opened: RedisClient[] = [];
    const open = () => {
      const r = openRedis(target, { maxRetriesPerRequest: null });
      r.on("error", () => {});
      opened.push(r);
      return r;
    };
    const events = new TaskEventSubscriber(open(), keys);
    const revocations = new KeyRevocations(open(), keys);
    try {
      const cancels: string[] = [];
      const unsubscribe = await subscribeCancels(open(), keys, (id) => cancels.push(id));
      const heard: TaskEvent[] = [];
      events.listen({ events: (batch) => heard.push(...batch), resubscribed: () => {} });
      expect(await events.ready(10_000)).toBe(true);
      const revoked: string[] = [];
      revocations.listen({ revoked: (ids) => revoked.push(...ids), reset: () => {} });
      await revocations.ready();

      const taskId = newTaskId();
      // PUBLISH counts the subscribers of the node it was sent to only: 0 when they are on another node.
      await publishCancel(ctx.redis, keys, taskId);
      const publisher = new TaskEventPublisher(ctx.redis, keys);
      publisher.publish({ type: "status", task_id: taskId, agent_id: uuid(), status: "pending", percent: 0, attempt: 0, at: new Date().toISOString() });
      await publisher.flushed();
      expect(publisher.stats).toMatchObject({ published: 1, failed: 0 });
      const keyId = randomUUID();
      // Published through the test context's own bus: another connection of another "process" hears it.
      await ctx.keyRevocations.publish([keyId]);

      await eventually(async () => (cancels.includes(taskId) ? true : undefined), 5_000, "the cancel to arrive");
      await eventually(async () => (heard.some((e) => e.task_id === taskId && e.id >= 1) ? true : undefined), 5_000, "the task event to arrive");
      await eventually(async () => (revoked.includes(keyId) ? true : undefined), 5_000, "the revocation to arrive");
      await unsubscribe();
    } finally {
      events.close();
      revocations.close();
      for (const r of opened) r.disconnect();
    }
  }, 20_000);

  test("rate limits count on the cluster: rate-limiter-flexible's script runs on the slot's primary and refuses past the budget", async () => {
    const warnings: unknown[] = [];
    const limits = new RateLimits(ctx.redis, queueKeys(ctx.config.redisPrefix), {
      limits: { enqueue: 2, read: 0 },
      windowS: 60,
      logger: { warn: (...args: unknown[]) => void warnings.push(args) } as never,
      metrics: ctx.metrics,
    });
    const caller = `stored:${randomUUID()}`;
    const decisions = [];
    for (let i = 0; i < 3; i++) decisions.push((await limits.consume("enqueue", caller)).outcome);
    expect(decisions).toEqual(["allowed", "allowed", "limited"]);
    expect(warnings).toEqual([]);
    // The counter is in the cluster (the refused request counted too), under the deployment's slot.
    expect(Number(await ctx.redis.get(`${queueKeys(ctx.config.redisPrefix).rateLimit("enqueue")}:${caller}`))).toBe(3);
  });

  test("readiness and the scrape-time gauges read the cluster: queue depth per priority and the oldest queued task's age", async () => {
    expect((await ctx.request("GET", "/readyz")).status).toBe(200);
    const id = await enqueue(ctx, await corpus.agent(), { priority: "high" });
    try {
      const scraped = samples((await ctx.request("GET", "/metrics")).text);
      expect(scraped.get(`agentq_queue_depth{priority="high"}`)).toBe(1);
      expect(scraped.get(`agentq_queue_depth{priority="low"}`)).toBe(0);
      expect(scraped.get("agentq_oldest_pending_task_age_seconds")).toBeGreaterThanOrEqual(0);
      // And the API's view of the pending task: its queue position from the estimate script.
      expect((await ctx.request("GET", `tasks/${id}`)).body.queue_position).toBe(1);
    } finally {
      expect((await ctx.request("DELETE", `tasks/${id}`)).status).toBe(204);
    }
  });

  test.each([1, 8])("strict priority order: positions, estimates and the start order of a one-worker engine of concurrency %d", async (concurrency) => {
    const root = uuid();
    await postTaxonomy(ctx, `p${concurrency}`, [{ node_id: root, label: "root" }]);
    await priorityOrderScenario(ctx, { root, concurrency });
  }, 30_000);

  test("cancel of a running task: it ends cancelled, with no effects, and the engine goes on to the next task", async () => {
    const engine = await startTestEngine(ctx, { workers: 1, workerUrl: FIXTURE_WORKERS.scripted });
    try {
      const running = await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 5_000 }));
      await engine.waitForEvent((e) => e.type === "task_started" && e.taskId === running);
      expect((await ctx.request("DELETE", `tasks/${running}`)).status).toBe(204);
      expect(await waitForStatus(ctx, running, ["cancelled", "completed", "failed", "timeout"], 2_000)).toBe("cancelled");
      const next = await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 50 }));
      expect(await waitForStatus(ctx, next, ["completed", "failed", "cancelled", "timeout"])).toBe("completed");
      const history = await historyByTask(ctx);
      expect(history.get(running)).toBeUndefined();
      expect(history.get(next)).toBe(1);
    } finally {
      await engine.stop();
    }
  }, 30_000);

  test("kill -9 of one of two supervisor processes: every task still completes exactly once, the dead one's tasks are retried", async () => {
    await supervisorKillScenario(ctx, children);
  }, 60_000);

  test("Redis loss: FLUSHALL on every node mid-run, twice: queued, running and newly enqueued tasks all complete exactly once", async () => {
    await redisLossScenario(ctx, corpus, () => service.cluster.flushAll());
  }, 60_000);

  test("after all that, the prefix's keys are all on one node: the primary that serves the {coverage} slot", async () => {
    if (!isCluster(ctx.redis)) throw new Error("not a cluster");
    const keys = queueKeys(ctx.config.redisPrefix);
    // A live supervisor's heartbeat at least: written while an engine runs.
    const engine = await startTestEngine(ctx, { workers: 1, workerUrl: FIXTURE_WORKERS.scripted });
    try {
      await eventually(async () => ((await ctx.redis.hlen(keys.capacity)) > 0 ? true : undefined), 5_000, "a capacity heartbeat");
      const perNode = await Promise.all(ctx.redis.nodes("master").map((node) => keysOfPrefix(node, keys)));
      const holding = perNode.filter((found) => found.length > 0);
      expect(holding.length).toBe(1);
      expect((await keysOfPrefix(ctx.redis, keys)).sort()).toEqual(holding[0]!.sort());
    } finally {
      await engine.stop();
    }
  }, 20_000);
});
