/**
 * Invariant 4 (no task lost when a supervisor process dies) and 3 (exactly one
 * terminal status, exactly-once effects): two supervisor processes share the
 * database and the Redis prefix; one is killed with SIGKILL mid-run.
 */
import { expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import type { TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, spawnSupervisor } from "../helpers/engine.ts";
import {
  e2eSuite,
  createCorpus,
  enqueue,
  expectExactlyOnceEffects,
  exitWithin,
  mapLimit,
  waitAllTerminal,
  waitForBackendsGone,
} from "./support.ts";

const TASKS = 40;
/** Four tasks per thread: claims and endings are batched when the kill lands. */
const BATCHING = { AGENTQ_WORKER_CONCURRENCY: "4" };
let ctx: TestContext;
const children = e2eSuite((c) => (ctx = c));

test("kill -9 of one of two supervisor processes: every task still completes exactly once, the dead one's tasks are retried", async () => {
  const corpus = await createCorpus(ctx);
  const [a, b] = await Promise.all([
    spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: BATCHING }).then((p) => children.track(p)),
    spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: BATCHING }).then((p) => children.track(p)),
  ]);

  // Many agents, each with a slow (300 ms) refresh.
  const agents = await mapLimit(Array.from({ length: TASKS }), 8, () => corpus.agent({ mode: "slow", ms: 300 }));
  const ids = await mapLimit(agents, 8, (agentId) => enqueue(ctx, agentId));
  expect(new Set(ids).size).toBe(TASKS);

  // Once the victim runs a batch on its threads (claimed together, ending together), kill it outright.
  const victim = a!;
  const runningOn = async (p: typeof victim) =>
    (
      await ctx.database.db.execute<{ task_id: string }>(
        sql`select task_id from background_tasks where status = 'running' and starts_with(lease_owner, ${p.id + "-"})`,
      )
    ).map((r) => r.task_id);
  await eventually(async () => ((await runningOn(victim)).length >= 4 ? true : undefined), 15_000, "the victim to run four tasks");
  victim.proc.kill("SIGKILL");
  await exitWithin(victim, 5_000);
  expect(victim.proc.signalCode).toBe("SIGKILL");
  // Its worker threads' connections are gone once PostgreSQL notices: nothing it did is in flight any more.
  await waitForBackendsGone(ctx, `agentq-worker-${victim.id}-`);
  const orphans = await runningOn(victim);
  expect(orphans.length).toBeGreaterThan(0);

  const final = await waitAllTerminal(ctx, ids, 40_000);
  const byStatus: Record<string, string[]> = {};
  for (const id of ids) (byStatus[final.get(id)!.status] ??= []).push(id);
  // No task lost, none left non-terminal, every one completed.
  expect(Object.keys(byStatus)).toEqual(["completed"]);
  expect(byStatus.completed!.length).toBe(TASKS);
  // The killed supervisor's running tasks were retried after their leases lapsed.
  for (const id of orphans) expect(final.get(id)!.attempt).toBeGreaterThanOrEqual(2);
  for (const id of orphans) expect(final.get(id)!.lease_owner?.startsWith(`${b!.id}-`)).toBe(true);
  await expectExactlyOnceEffects(ctx, final);

  // The survivor still stops cleanly.
  b!.proc.kill("SIGTERM");
  expect((await exitWithin(b!, FAST_ENGINE.drainDeadlineMs! + 5_000)).code).toBe(0);
}, 60_000);
