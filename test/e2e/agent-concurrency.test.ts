/**
 * max_concurrent_refreshes across supervisor processes (issue 11, item 6): two supervisors, each
 * with 2 threads of 4 task slots (16 slots in all), share one agent limited to 2 with 20 slow
 * tasks, and other agents whose tasks are enqueued behind that backlog. The limited agent never
 * has more than 2 tasks running (sampled from PostgreSQL during the run, and read back from the
 * tasks' started_at/completed_at), the others finish long before its backlog does, and every task
 * completes exactly once.
 */
import { expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import type { TestContext } from "../helpers/app.ts";
import { eventually, spawnSupervisor } from "../helpers/engine.ts";
import { maxOverlap } from "../helpers/intervals.ts";
import { createCorpus, e2eSuite, enqueue, expectExactlyOnceEffects, loadTasks, mapLimit } from "./support.ts";

const LIMIT = 2;
const BACKLOG = 20;
const TASK_MS = 250;
const OTHERS = 6;
let ctx: TestContext;
const children = e2eSuite((c) => (ctx = c));

test("an agent limited to 2 across two supervisor processes: never more than 2 of its 20 tasks run at once, other agents' tasks behind them are not held up, each task completes once", async () => {
  const corpus = await createCorpus(ctx);
  const env = { AGENTQ_WORKER_CONCURRENCY: "4" };
  const [a, b] = await Promise.all([
    spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env }).then((p) => children.track(p)),
    spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env }).then((p) => children.track(p)),
  ]);
  const limited = await corpus.agent({ mode: "slow", ms: TASK_MS });
  expect((await ctx.request("PATCH", `agents/${limited}`, { body: { max_concurrent_refreshes: LIMIT } })).body.max_concurrent_refreshes).toBe(LIMIT);
  const others = await mapLimit(Array.from({ length: OTHERS }), 4, () => corpus.agent({ mode: "slow", ms: 50 }));

  // The backlog first, the others' tasks behind it in the same queue.
  const backlog: string[] = [];
  for (let i = 0; i < BACKLOG; i++) backlog.push(await enqueue(ctx, limited, { force: true }));
  const behind = await mapLimit(others, 4, (agentId) => enqueue(ctx, agentId));
  const all = [...backlog, ...behind];

  // Sample the limited agent's running tasks until everything is done.
  const samples: number[] = [];
  const owners = new Set<string>();
  await eventually(
    async () => {
      const [row] = await ctx.database.db.execute<{ running: number; owners: string[] | null; left: number }>(sql`
        select count(*) filter (where agent_id = ${limited} and status = 'running')::int as running,
               array_agg(distinct lease_owner) filter (where agent_id = ${limited} and status = 'running') as owners,
               count(*) filter (where status in ('pending', 'running'))::int as left
        from background_tasks where task_id = any(${`{${all.join(",")}}`}::text[])`);
      samples.push(row!.running);
      for (const o of row!.owners ?? []) owners.add(o);
      return row!.left === 0 ? true : undefined;
    },
    60_000,
    "every task to end",
  );
  expect(samples.length).toBeGreaterThan(20);
  expect(Math.max(...samples)).toBeLessThanOrEqual(LIMIT);
  expect(Math.max(...samples)).toBe(LIMIT); // the limit is used, not undershot

  const rows = await ctx.database.db.execute<{ task_id: string; created: number; start: number; end: number }>(sql`
    select task_id, extract(epoch from created_at) * 1000 as created, extract(epoch from started_at) * 1000 as start,
           extract(epoch from completed_at) * 1000 as end
    from background_tasks where task_id = any(${`{${all.join(",")}}`}::text[])`);
  const byId = new Map(rows.map((r) => [r.task_id, { created: Number(r.created), start: Number(r.start), end: Number(r.end) }]));
  expect(maxOverlap(backlog.map((id) => byId.get(id)!))).toBe(LIMIT);
  // Both supervisors ran the limited agent's tasks: the limit held across processes, not within one.
  // (Owners are worker ids, `<supervisor id>-<n>`, as seen running in the samples.)
  for (const p of [a!, b!]) expect([...owners].some((o) => o.startsWith(`${p.id}-`))).toBe(true);

  // The others did not wait for the backlog (20 tasks, 2 at a time, 250 ms each: 2.5 s at best):
  // all of them were done before half of it was.
  const backlogEnds = backlog.map((id) => byId.get(id)!.end).sort((x, y) => x - y);
  const firstStart = Math.min(...backlog.map((id) => byId.get(id)!.start));
  const othersDone = Math.max(...behind.map((id) => byId.get(id)!.end));
  expect(othersDone).toBeLessThan(backlogEnds[BACKLOG / 2 - 1]!);
  const othersWait = Math.max(...behind.map((id) => byId.get(id)!.start - byId.get(id)!.created));
  console.log(
    `limit ${LIMIT}: ${samples.length} samples, at most ${Math.max(...samples)} running; the others waited at most ${Math.round(othersWait)} ms from enqueue to start ` +
      `and were done ${Math.round(othersDone - firstStart)} ms after the backlog's first start; the backlog took ${Math.round(backlogEnds.at(-1)! - firstStart)} ms ` +
      `(its tasks ran ${Math.round(backlog.reduce((sum, id) => sum + byId.get(id)!.end - byId.get(id)!.start, 0) / BACKLOG)} ms each on average, ${TASK_MS} ms of it the fixture's sleep)`,
  );

  const final = await loadTasks(ctx);
  for (const id of all) expect(final.get(id)!.status).toBe("completed");
  await expectExactlyOnceEffects(ctx, final);
  // Nothing left parked.
  expect(await ctx.redis.exists(`${ctx.config.redisPrefix}:{coverage}:parked:${limited}`)).toBe(0);
}, 90_000);
