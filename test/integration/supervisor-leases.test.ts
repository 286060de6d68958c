/**
 * Lease renewal and capacity heartbeats (src/supervisor/leases.ts) while
 * PostgreSQL hangs: renewals do not pile up (single-flight), and the capacity
 * heartbeat, which touches only Redis, goes on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { CapacityHeartbeat, LeaseKeeper } from "../../src/supervisor/leases.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import type { TaskStatus } from "../../src/core/tasks.ts";

let ctx: TestContext;
let agentId: string;
beforeAll(async () => {
  ctx = await createTestContext();
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "r" }]);
  agentId = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
});
afterAll(() => ctx.close());

const renewalsInFlight = async () =>
  (
    await ctx.database.db.execute<{ n: number }>(sql`
    select count(*)::int as n from pg_stat_activity where state = 'active' and query like '%set lease_expires_at = now()%'
      and query not like '%pg_stat_activity%'`)
  )[0]!.n;

test("while PostgreSQL hangs, lease renewals do not pile up and the capacity heartbeat goes on", async () => {
  const { task } = await insertTask(ctx.database.db, taskInput(agentId));
  const claim = (await claimTask(ctx.database.db, task.task_id, "w1", 60_000))!;
  const lost: Map<string, TaskStatus | null>[] = [];
  const keeper = new LeaseKeeper({
    database: ctx.database,
    logger: ctx.logger,
    leaseMs: 60_000,
    held: () => [{ taskId: claim.taskId, leaseToken: claim.leaseToken }],
    onLost: (tokens) => lost.push(tokens),
  });
  const heartbeat = new CapacityHeartbeat({
    redis: ctx.redis,
    keys: queueKeys(ctx.config.redisPrefix),
    supervisorId: "sup-test",
    everyMs: 1000,
    logger: ctx.logger,
    capacity: () => ({ workers: 8, busy: 1 }),
  });
  // Another transaction holds the task's row: the renewal's UPDATE waits on it, as on a hung server.
  const holder = await ctx.database.sql.reserve();
  try {
    await holder`begin`;
    await holder`select 1 from background_tasks where task_id = ${claim.taskId} for update`;
    const first = keeper.tick();
    for (let i = 0; i < 5; i++) void keeper.tick();
    expect(keeper.skipped).toBe(5);
    // PostgreSQL state, no event reaches the test: re-checked until seen.
    await eventually(async () => ((await renewalsInFlight()) > 0 ? true : undefined), 2_000, "the renewal to reach PostgreSQL");
    expect(await renewalsInFlight()).toBe(1);
    await heartbeat.beat();
    const entry = JSON.parse((await ctx.redis.hget(queueKeys(ctx.config.redisPrefix).capacity, "sup-test"))!);
    expect(entry).toMatchObject({ workers: 8, busy: 1 });
    expect(entry.expires).toBeGreaterThan(Date.now());
    await holder`rollback`;
    await first;
    expect(lost).toEqual([]);
  } finally {
    holder.release();
    keeper.stop();
    await heartbeat.stop();
  }
  expect(await ctx.redis.hget(queueKeys(ctx.config.redisPrefix).capacity, "sup-test")).toBeNull();
});

test("a lease that matched no row is reported lost, by token, with what became of its task", async () => {
  const { task } = await insertTask(ctx.database.db, taskInput(agentId));
  const claim = (await claimTask(ctx.database.db, task.task_id, "w1", 60_000))!;
  // A task whose ending committed just before the renewal: its lease is gone, and it says so.
  const { task: other } = await insertTask(ctx.database.db, taskInput(agentId));
  const ended = (await claimTask(ctx.database.db, other.task_id, "w1", 60_000))!;
  await ctx.database.db.execute(sql`update background_tasks set status = 'completed', lease_token = null where task_id = ${ended.taskId}`);
  const lost: Map<string, TaskStatus | null>[] = [];
  const stale = uuid();
  const keeper = new LeaseKeeper({
    database: ctx.database,
    logger: ctx.logger,
    leaseMs: 60_000,
    held: () => [
      { taskId: claim.taskId, leaseToken: claim.leaseToken },
      { taskId: claim.taskId, leaseToken: stale },
      { taskId: ended.taskId, leaseToken: ended.leaseToken },
    ],
    onLost: (tokens) => lost.push(tokens),
  });
  await keeper.tick();
  expect(lost).toEqual([
    new Map<string, TaskStatus | null>([
      [stale, "running"],
      [ended.leaseToken, "completed"],
    ]),
  ]);
});
