/**
 * Invariant 1 (PostgreSQL is the truth; Redis can be rebuilt from it) and 4 (no
 * task lost when Redis loses its data). The Redis server is shared with other
 * people's tests, so "Redis lost its data" (FLUSHALL, failover to an empty
 * replica) is simulated by deleting every key of THIS test's prefix only.
 */
import { beforeAll, expect, test } from "bun:test";
import type { TestContext } from "../helpers/app.ts";
import { startTestEngine } from "../helpers/engine.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { taskInput } from "../helpers/fixtures.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { createCorpus, e2eSuite, enqueue, expectExactlyOnceEffects, loseRedisData, queuedIds, waitAllTerminal, type Corpus } from "./support.ts";
import { redisLossScenario } from "./scenarios.ts";

let ctx: TestContext;
let corpus: Corpus;
e2eSuite((c) => (ctx = c));
beforeAll(async () => {
  corpus = await createCorpus(ctx);
});

test("all keys of the prefix deleted mid-run (simulated FLUSHALL): queued, running and newly enqueued tasks all complete exactly once", async () => {
  await redisLossScenario(ctx, corpus, () => loseRedisData(ctx));
}, 60_000);

test("a pending task Redis never heard of (INSERT committed, ZADD lost) and one removed from the queue are re-dispatched by the reconciler and complete", async () => {
  const agentA = await corpus.agent({ mode: "slow", ms: 100 });
  const agentB = await corpus.agent({ mode: "slow", ms: 100 });
  // (a) The API's crash window: the row is written, the process dies before ZADD.
  const { task: neverQueued } = await insertTask(
    ctx.database.db,
    taskInput(agentA, { priority: "high", timeoutMs: ctx.config.taskTimeoutMs, maxAttempts: ctx.config.maxAttempts, dedupe: true }),
  );
  // (b) Enqueued normally (no engine runs yet), then its id vanishes from Redis.
  const removed = await enqueue(ctx, agentB, { priority: "low" });
  expect(await ctx.redis.zrem(`${ctx.config.redisPrefix}:{coverage}:queue:low`, removed)).toBe(1);
  expect((await queuedIds(ctx)).size).toBe(0);

  const engine = await startTestEngine(ctx, { workers: 2, workerUrl: FIXTURE_WORKERS.scripted });
  try {
    const ids = [neverQueued.task_id, removed];
    const final = await waitAllTerminal(ctx, ids, 15_000);
    for (const id of ids) expect(final.get(id)!.status).toBe("completed");
    for (const id of ids) expect(final.get(id)!.attempt).toBe(1);
    await expectExactlyOnceEffects(ctx, final);
  } finally {
    await engine.stop();
  }
}, 30_000);
