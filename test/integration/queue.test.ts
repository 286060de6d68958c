/**
 * The Redis priority queues: Dispatcher and popNext on a real Redis (no
 * supervisor running), then through the API (queue position and completion
 * estimate of pending tasks) and a one-worker engine that must start the tasks
 * in exactly that order.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE } from "../helpers/engine.ts";
import { postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { Dispatcher, popNext, type Dispatchable } from "../../src/queue/dispatch.ts";
import { queueKeys, type QueueKeys } from "../../src/queue/keys.ts";
import { newTaskId, PRIORITIES, type Priority } from "../../src/core/tasks.ts";
import { priorityOrderScenario } from "../helpers/scenarios.ts";

let ctx: TestContext;
let keys: QueueKeys;
let dispatcher: Dispatcher;
let blocking: Redis;
let root: string;

beforeAll(async () => {
  ctx = await createTestContext(FAST_ENGINE);
  keys = queueKeys(ctx.config.redisPrefix);
  dispatcher = new Dispatcher(ctx.redis, keys);
  blocking = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: null });
  root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
});
afterAll(async () => {
  blocking.disconnect();
  await ctx.close();
});
const clearQueues = async () => {
  await ctx.redis.del(...keys.queues);
};
afterEach(clearQueues);

/** Pops until the queues are empty (a short block proves they are). */
async function drain(): Promise<{ taskId: string; priority: Priority }[]> {
  const out: { taskId: string; priority: Priority }[] = [];
  for (;;) {
    const next = await popNext(blocking, keys, 0.05);
    if (!next) return out;
    out.push(next);
  }
}

const RANK: Record<Priority, number> = { high: 0, medium: 1, low: 2 };

describe("Dispatcher and popNext on Redis", () => {
  test("keys share one hash tag, one sorted set per priority, highest first", () => {
    expect(keys.queues).toEqual(PRIORITIES.map((p) => keys.queue(p)));
    expect(keys.queues).toEqual([keys.queue("high"), keys.queue("medium"), keys.queue("low")]);
    for (const key of [...keys.queues, keys.cancelChannel, keys.capacity, keys.runtimes, keys.lock("x")])
      expect(key.startsWith(`${ctx.config.redisPrefix}:{coverage}:`)).toBe(true);
  });

  test("popNext returns every high task before any medium, every medium before any low, FIFO within a priority", async () => {
    // Interleaved enqueue order: low first, then a mix, so only the queue order can explain the result.
    const plan: Priority[] = ["low", "medium", "high", "low", "high", "medium", "low", "high", "medium", "medium", "low", "high"];
    const base = Date.now();
    const tasks: Dispatchable[] = plan.map((priority, i) => ({ taskId: newTaskId(), priority, score: base + i }));
    // One dispatch per task, in enqueue order, as the API does.
    for (const t of tasks) await dispatcher.dispatch([t]);
    const popped = await drain();
    const expected = [...tasks].sort((a, b) => RANK[a.priority] - RANK[b.priority] || a.score - b.score);
    expect(popped).toEqual(expected.map((t) => ({ taskId: t.taskId, priority: t.priority })));
    // Sanity of the claim itself: priorities are non-decreasing in rank along the popped order.
    const ranks = popped.map((p) => RANK[p.priority]);
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
  });

  test("FIFO within a priority holds for tasks enqueued in the same millisecond (ties broken by the time-ordered id)", async () => {
    const score = Date.now();
    const ids = Array.from({ length: 20 }, () => newTaskId());
    // Dispatched in reverse, same score: the id order (creation order) must still win.
    await dispatcher.dispatch([...ids].reverse().map((taskId) => ({ taskId, priority: "medium" as const, score })));
    expect((await drain()).map((p) => p.taskId)).toEqual(ids);
  });

  test("popNext blocks on empty queues until a task arrives, then returns it at once", async () => {
    const name = `agentq-queue-test-${uuid().slice(0, 8)}`;
    const conn = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: null, connectionName: name });
    try {
      const id = newTaskId();
      const waiting = popNext(conn, keys, 10);
      // Wait until Redis reports this connection blocked in BZPOPMIN: the pop is really waiting.
      await eventually(async () => {
        const list = (await ctx.redis.client("LIST")) as string;
        return list.split("\n").some((l) => l.includes(`name=${name}`) && l.includes("cmd=bzpopmin")) ? true : undefined;
      }, 5000, "the pop to block");
      const before = performance.now();
      await dispatcher.dispatch([{ taskId: id, priority: "low", score: Date.now() }]);
      expect(await waiting).toEqual({ taskId: id, priority: "low" });
      expect(performance.now() - before).toBeLessThan(1000);
    } finally {
      conn.disconnect();
    }
  });

  test("popNext returns null when every queue stays empty for its timeout", async () => {
    expect(await popNext(blocking, keys, 0.05)).toBeNull();
  });

  test("queue position counts across priorities (1 = next) and follows pops and removals", async () => {
    const base = Date.now();
    const make = (priority: Priority, n: number, offset: number) =>
      Array.from({ length: n }, (_, i) => ({ taskId: newTaskId(), priority, score: base + offset + i }));
    // Enqueue low first, then medium, then high: positions must still be high-first.
    const low = make("low", 2, 0);
    const medium = make("medium", 3, 10);
    const high = make("high", 2, 20);
    await dispatcher.dispatch([...low, ...medium, ...high]);
    const ordered = [...high, ...medium, ...low];
    for (const [i, t] of ordered.entries()) expect(await dispatcher.position(t.taskId, t.priority)).toBe(i + 1);
    expect(await dispatcher.depths()).toEqual({ high: 2, medium: 3, low: 2 });

    // A task not queued (or asked under the wrong priority) has no position.
    expect(await dispatcher.position(newTaskId(), "high")).toBeNull();
    expect(await dispatcher.position(low[0]!.taskId, "high")).toBeNull();

    // Removing a medium task moves everything behind it up by one.
    expect(await dispatcher.remove(medium[1]!.taskId, "medium")).toBe(true);
    expect(await dispatcher.remove(medium[1]!.taskId, "medium")).toBe(false);
    expect(await dispatcher.remove(low[0]!.taskId, "high")).toBe(false);
    expect(await dispatcher.position(medium[1]!.taskId, "medium")).toBeNull();
    expect(await dispatcher.position(medium[2]!.taskId, "medium")).toBe(4);
    expect(await dispatcher.position(low[0]!.taskId, "low")).toBe(5);
    expect(await dispatcher.depths()).toEqual({ high: 2, medium: 2, low: 2 });

    // Popping the head moves everyone up by one more.
    expect(await popNext(blocking, keys, 1)).toEqual({ taskId: high[0]!.taskId, priority: "high" });
    expect(await dispatcher.position(high[1]!.taskId, "high")).toBe(1);
    expect(await dispatcher.position(low[1]!.taskId, "low")).toBe(5);
    expect(await dispatcher.depths()).toEqual({ high: 1, medium: 2, low: 2 });

    expect(await dispatcher.queuedAmong([...ordered.map((t) => ({ taskId: t.taskId, priority: t.priority }))])).toEqual([
      false, // popped
      true,
      true,
      false, // removed
      true,
      true,
      true,
    ]);
  });

  test("depths are zero for empty queues", async () => {
    expect(await dispatcher.depths()).toEqual({ high: 0, medium: 0, low: 0 });
  });

  test("dispatching an already queued id again (NX) keeps its original place", async () => {
    const base = Date.now();
    const [a, b, c] = [newTaskId(), newTaskId(), newTaskId()];
    await dispatcher.dispatch([
      { taskId: a!, priority: "medium", score: base },
      { taskId: b!, priority: "medium", score: base + 1 },
      { taskId: c!, priority: "medium", score: base + 2 },
    ]);
    // A re-dispatch (reconciler, retry) with a later score must not send `a` to the back...
    await dispatcher.dispatch([{ taskId: a!, priority: "medium", score: base + 1000 }]);
    // ...nor an earlier score pull `c` to the front.
    await dispatcher.dispatch([{ taskId: c!, priority: "medium", score: base - 1000 }]);
    expect(await dispatcher.position(a!, "medium")).toBe(1);
    expect(await dispatcher.position(c!, "medium")).toBe(3);
    expect(await dispatcher.depths()).toEqual({ high: 0, medium: 3, low: 0 });
    expect(await ctx.redis.zscore(keys.queue("medium"), a!)).toBe(String(base));
    expect((await drain()).map((p) => p.taskId)).toEqual([a!, b!, c!]);
  });

  test("dispatching nothing is a no-op", async () => {
    await dispatcher.dispatch([]);
    expect(await dispatcher.queuedAmong([])).toEqual([]);
    expect(await dispatcher.depths()).toEqual({ high: 0, medium: 0, low: 0 });
  });
});

describe("through the API", () => {
  test.each([1, 8])("pending tasks show queue positions 1..n in priority-then-FIFO order with non-decreasing estimates, and a one-worker engine of concurrency %d starts them in exactly that order", async (concurrency) => {
    await priorityOrderScenario(ctx, { root, concurrency });
  });
});
