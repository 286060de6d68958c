/**
 * Redis Sentinel failover under load (issue 11, item 1), against real servers from Debian's
 * redis-server and redis-sentinel (test/helpers/redisSentinel.ts): a primary with a password,
 * a replica, three sentinels. A supervisor process (its worker threads' command and blocking
 * connections, its cancel-bus subscriber) and the API in the test process (its key-revocation
 * subscriber, rate limits and live events share its connection) all find the primary through
 * the sentinels. The primary is SIGKILLed mid-run and never comes back:
 *  - the sentinels promote the replica;
 *  - every task completes, exactly once (one history row each), with no operator step;
 *  - tasks enqueued after the failover complete too (a 503 during it is retried, as a client would);
 *  - the time from the kill to the first completion after it is printed (docs/runbook.md, "Redis Sentinel").
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, spawnSupervisor } from "../helpers/engine.ts";
import { startRedisSentinel, type RedisSentinel } from "../helpers/redisSentinel.ts";
import { Children, createCorpus, enqueueRetrying as enqueueShared, failoverOutcome, mapLimit, type Corpus } from "./support.ts";

let deployment: RedisSentinel;
let ctx: TestContext;
let corpus: Corpus;
const children = new Children();

beforeAll(async () => {
  deployment = await startRedisSentinel({ name: "agentq-e2e", password: "e2e-primary-secret" });
  ctx = await createTestContext({
    ...FAST_ENGINE,
    redisUrl: deployment.redisUrl,
    redisSentinels: deployment.sentinels,
    redisSentinelName: deployment.name,
  });
  // The test's own connection (createTestContext's) reconnects like the others; its errors meanwhile are expected.
  ctx.redis.on("error", () => {});
  corpus = await createCorpus(ctx);
}, 60_000);

// One hook, in order: the processes that use Redis, then the context (it deletes its keys), then the servers.
afterAll(async () => {
  await children.killAll();
  await ctx?.close().catch((error) => console.error("context close:", error));
  await deployment?.stop();
}, 30_000);

/** Retried on 503 (Redis unreachable during the failover) as a client would (support.ts). */
const enqueueRetrying = (agentId: string, priority: "high" | "medium" = "medium") => enqueueShared(ctx, agentId, priority);

async function completedCount(): Promise<number> {
  const [row] = await ctx.database.db.execute<{ n: number }>(sql`select count(*)::int as n from background_tasks where status = 'completed'`);
  return row!.n;
}

test("the primary is SIGKILLed mid-run: the replica is promoted, every task completes exactly once, no operator step", async () => {
  const sup = children.track(
    await spawnSupervisor(ctx, {
      workers: 2,
      fixture: "scripted",
      env: {
        AGENTQ_REDIS_SENTINELS: deployment.sentinelList,
        AGENTQ_REDIS_SENTINEL_NAME: deployment.name,
        AGENTQ_WORKER_CONCURRENCY: "2",
      },
    }),
  );
  let exited: number | undefined;
  void sup.exited.then((code) => (exited = code));

  // 60 tasks of 300 ms on 4 slots: about 4.5 s of work, the kill lands early in it.
  const agents = await mapLimit(Array.from({ length: 60 }), 8, () => corpus.agent({ mode: "slow", ms: 300 }));
  const before = await mapLimit(agents, 8, (agentId) => enqueueRetrying(agentId));
  const probeAgents = await mapLimit(Array.from({ length: 3 }), 3, () => corpus.agent({ mode: "slow", ms: 50 }));
  await eventually(async () => ((await completedCount()) >= 6 ? true : undefined), 20_000, "some tasks to complete before the kill");

  // PostgreSQL's clock, the one completed_at and started_at are written with.
  const clock = await ctx.database.db.execute<{ killed_at: string }>(sql`select clock_timestamp()::text as killed_at`);
  const killedAt = clock[0]!.killed_at;
  await deployment.killPrimary();
  // Enqueued right after the kill, high priority (ahead of the backlog): each needs the new primary
  // to be dispatched (the API's ZADD, or the reconciler's once Redis answers) and popped.
  const probes = await mapLimit(probeAgents, 3, (agentId) => enqueueRetrying(agentId, "high"));
  const completedAtKill = await completedCount();
  expect(completedAtKill).toBeLessThan(before.length);

  await eventually(async () => ((await deployment.announcedPrimary()).port === deployment.replica.port ? true : undefined), 30_000, "the sentinels to promote the replica");
  // Enqueued through the API after the failover: its connection found the new primary by itself.
  const after = await mapLimit(Array.from({ length: 10 }), 4, async () => enqueueRetrying(await corpus.agent({ mode: "slow", ms: 50 })));

  const { firstCompletionMs, firstProbeMs } = await failoverOutcome(ctx, { all: [...before, ...probes, ...after], probes, killedAt });
  expect(exited).toBeUndefined();
  console.log(
    `redis-sentinel failover: ${completedAtKill} of ${before.length} done at the kill; kill -> first completion after it ${firstCompletionMs} ms; ` +
      `kill -> first completion of a task enqueued after it ${firstProbeMs} ms`,
  );
  expect(firstProbeMs).toBeGreaterThan(0);
}, 120_000);
