/**
 * Redis Cluster failover under load: a private cluster of three primaries with one replica each
 * (test/helpers/redisCluster.ts). A supervisor process and the API in the test process use it
 * through ioredis's Cluster client. The primary that serves the deployment's slot (every agentq
 * key is in the `{coverage}` slot) is SIGKILLed mid-run and never comes back:
 *  - its replica is promoted by the cluster itself (no sentinels);
 *  - every task completes, exactly once (one history row each), with no operator step;
 *  - tasks enqueued right after the kill and after the failover complete too (503s retried);
 *  - the time from the kill to the first completion of a task enqueued after it is printed
 *    (docs/runbook.md, "Redis Cluster").
 */
import { expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import type { TestContext } from "../helpers/app.ts";
import { eventually, spawnSupervisor } from "../helpers/engine.ts";
import { redisClusterService } from "../helpers/redisCluster.ts";
import { createCorpus, e2eSuite, enqueueRetrying, failoverOutcome, mapLimit, statusCounts } from "./support.ts";

/** The `{coverage}` slot (test/unit/keys-slot.test.ts). */
const SLOT = 9008;
const service = redisClusterService({ primaries: 3, replicas: 1 });
let ctx: TestContext;
const children = e2eSuite((c) => {
  ctx = c;
  // The test's own connection reconnects like the others; its errors meanwhile are expected.
  ctx.redis.on("error", () => {});
}, { service });

test("the primary of the deployment's slot is SIGKILLed mid-run: its replica is promoted, every task completes exactly once, no operator step", async () => {
  const cluster = service.cluster;
  const corpus = await createCorpus(ctx);
  const sup = children.track(await spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: { AGENTQ_WORKER_CONCURRENCY: "2" } }));
  let exited: number | undefined;
  void sup.exited.then((code) => (exited = code));

  // 60 tasks of 300 ms on 4 slots: about 4.5 s of work, the kill lands early in it.
  const agents = await mapLimit(Array.from({ length: 60 }), 8, () => corpus.agent({ mode: "slow", ms: 300 }));
  const before = await mapLimit(agents, 8, (agentId) => enqueueRetrying(ctx, agentId));
  const probeAgents = await mapLimit(Array.from({ length: 3 }), 3, () => corpus.agent({ mode: "slow", ms: 50 }));
  await eventually(async () => (((await statusCounts(ctx)).completed ?? 0) >= 6 ? true : undefined), 20_000, "some tasks to complete before the kill");

  const victim = await cluster.primaryOf(SLOT);
  const survivor = cluster.nodes.find((n) => n.port !== victim.port)!;
  // PostgreSQL's clock, the one completed_at is written with.
  const [clock] = await ctx.database.db.execute<{ killed_at: string }>(sql`select clock_timestamp()::text as killed_at`);
  const killedAt = clock!.killed_at;
  await cluster.kill(victim);
  // Enqueued right after the kill, high priority (ahead of the backlog): each needs the promoted
  // replica to be dispatched (the API's ZADD, or the reconciler's once the slot is served) and popped.
  const probes = await mapLimit(probeAgents, 3, (agentId) => enqueueRetrying(ctx, agentId, "high"));
  const completedAtKill = (await statusCounts(ctx)).completed ?? 0;
  expect(completedAtKill).toBeLessThan(before.length);

  await eventually(
    async () => {
      const now = await cluster.primaryOf(SLOT, survivor).catch(() => undefined);
      return now && now.port !== victim.port ? now : undefined;
    },
    30_000,
    "the cluster to promote the slot's replica",
  );
  // Enqueued through the API after the failover: its Cluster client found the new primary by itself.
  const after = await mapLimit(Array.from({ length: 10 }), 4, async () => enqueueRetrying(ctx, await corpus.agent({ mode: "slow", ms: 50 })));

  const { firstCompletionMs, firstProbeMs } = await failoverOutcome(ctx, { all: [...before, ...probes, ...after], probes, killedAt });
  expect(exited).toBeUndefined();
  console.log(
    `redis-cluster failover: ${completedAtKill} of ${before.length} done at the kill; kill -> first completion after it ${firstCompletionMs} ms; ` +
      `kill -> first completion of a task enqueued after it ${firstProbeMs} ms`,
  );
  expect(firstProbeMs).toBeGreaterThan(0);
}, 120_000);
