/**
 * End-to-end scenarios that run on more than one Redis deployment: the single server of their
 * own files (redis-loss, supervisor-kill) and the private cluster of redis-cluster.test.ts. Each
 * takes what differs between deployments as a parameter (how Redis loses its data).
 */
import { expect } from "bun:test";
import { sql } from "drizzle-orm";
import type { TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, spawnSupervisor, startTestEngine } from "../helpers/engine.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import {
  createCorpus,
  enqueue,
  expectExactlyOnceEffects,
  exitWithin,
  mapLimit,
  queuedIds,
  statusCounts,
  waitAllTerminal,
  waitForBackendsGone,
  type Children,
  type Corpus,
} from "./support.ts";

/**
 * Redis loses every key mid-run, twice (`loseData`: delete the prefix's keys on a shared server,
 * FLUSHALL every node of a private cluster; returns how many keys went): queued, running and
 * newly enqueued tasks all complete exactly once, and the rebuilt queues end empty.
 */
export async function redisLossScenario(ctx: TestContext, corpus: Corpus, loseData: () => Promise<number>) {
  const engine = await startTestEngine(ctx, { workers: 3, concurrency: 4, workerUrl: FIXTURE_WORKERS.scripted });
  try {
    const agents = await mapLimit(Array.from({ length: 40 }), 8, () => corpus.agent({ mode: "slow", ms: 300 }));
    const first = await mapLimit(agents.slice(0, 30), 8, (a) => enqueue(ctx, a));
    // Mid-run: some done, some running, most still queued in Redis.
    await eventually(async () => ((await statusCounts(ctx)).completed! >= 3 ? true : undefined), 15_000, "3 completions");
    const queuedBefore = await queuedIds(ctx);
    expect(queuedBefore.size).toBeGreaterThan(5);

    // The queues went with the keys (the count says so); reading them back here would race the
    // reconciler, which may already be putting the lost ids back.
    expect(await loseData()).toBeGreaterThan(0);
    // Tasks enqueued while the queue was lost; then the data is lost a second time,
    // taking these tasks' dispatch with it as well.
    const second = await mapLimit(agents.slice(30), 8, (a) => enqueue(ctx, a));
    await loseData();

    const ids = [...first, ...second];
    const final = await waitAllTerminal(ctx, ids, 40_000);
    for (const id of ids) expect({ id, status: final.get(id)!.status }).toEqual({ id, status: "completed" });
    await expectExactlyOnceEffects(ctx, final);
    // Nothing left behind in the rebuilt queues.
    expect((await queuedIds(ctx)).size).toBe(0);
  } finally {
    await engine.stop();
  }
}

const KILL_TASKS = 40;
/** Four tasks per thread: claims and endings are batched when the kill lands. */
const BATCHING = { AGENTQ_WORKER_CONCURRENCY: "4" };

/**
 * Two supervisor processes share the database and the Redis prefix; one is SIGKILLed while it
 * runs a batch: every task still completes exactly once, the dead one's tasks retried by the
 * survivor after their leases lapse, and the survivor still stops cleanly on SIGTERM.
 */
export async function supervisorKillScenario(ctx: TestContext, children: Children) {
  const corpus = await createCorpus(ctx);
  const [a, b] = await Promise.all([
    spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: BATCHING }).then((p) => children.track(p)),
    spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: BATCHING }).then((p) => children.track(p)),
  ]);

  // Many agents, each with a slow (300 ms) refresh.
  const agents = await mapLimit(Array.from({ length: KILL_TASKS }), 8, () => corpus.agent({ mode: "slow", ms: 300 }));
  const ids = await mapLimit(agents, 8, (agentId) => enqueue(ctx, agentId));
  expect(new Set(ids).size).toBe(KILL_TASKS);

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
  expect(byStatus.completed!.length).toBe(KILL_TASKS);
  // The killed supervisor's running tasks were retried after their leases lapsed.
  for (const id of orphans) expect(final.get(id)!.attempt).toBeGreaterThanOrEqual(2);
  for (const id of orphans) expect(final.get(id)!.lease_owner?.startsWith(`${b!.id}-`)).toBe(true);
  await expectExactlyOnceEffects(ctx, final);

  // The survivor still stops cleanly.
  b!.proc.kill("SIGTERM");
  expect((await exitWithin(b!, FAST_ENGINE.drainDeadlineMs! + 5_000)).code).toBe(0);
}
