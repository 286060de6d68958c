/**
 * Invariant 4 (no task lost when PostgreSQL restarts) and 3 (exactly-once
 * effects). A restart is simulated by terminating every backend connection of
 * this test's database (what clients see when the server restarts), three
 * times mid-run, each time at an instant when some worker thread's statement is
 * in flight. The engine must recover on its own, promptly.
 */
import { expect, test } from "bun:test";
import type { TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, spawnSupervisor } from "../helpers/engine.ts";
import {
  e2eSuite,
  createCorpus,
  enqueue,
  expectExactlyOnceEffects,
  exitWithin,
  loadTasks,
  mapLimit,
  statusCounts,
  terminateBackends,
  TERMINAL,
  withFreshPool,
} from "./support.ts";

const TASKS = 40;
let ctx: TestContext;
const children = e2eSuite((c) => (ctx = c));

/** Reads state on a pool of its own (see withFreshPool); undefined if that read itself hit a terminated backend. */
async function observe<T>(read: (c: TestContext) => Promise<T>): Promise<T | undefined> {
  const o = withFreshPool(ctx);
  try {
    return await read(o);
  } catch {
    return undefined;
  } finally {
    await o.closePool();
  }
}

test("every backend of the database terminated three times mid-query: the engine recovers by itself, nothing is lost or stuck, effects stay exactly-once", async () => {
  const corpus = await createCorpus(ctx);
  const sups = await Promise.all([0, 1].map(() => spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: { AGENTQ_WORKER_CONCURRENCY: "4" } }).then((p) => children.track(p))));
  const agents = await mapLimit(Array.from({ length: TASKS }), 8, () => corpus.agent({ mode: "slow", ms: 300 }));
  const ids = await mapLimit(agents, 8, (a) => enqueue(ctx, a));

  let terminated = 0;
  for (const after of [4, 12, 20]) {
    await eventually(
      async () => {
        const c = await observe(statusCounts);
        return c && (c.completed ?? 0) >= after && (c.running ?? 0) > 0 ? true : undefined;
      },
      20_000,
      `${after} completions with tasks running`,
    );
    terminated += await terminateBackends(ctx, { whileWorkerQueryActive: true });
  }
  // Both supervisors' pools and their threads' pools were hit each time.
  expect(terminated).toBeGreaterThanOrEqual(3 * 4);

  // Fifteen seconds is several lease periods: recovery must not wait for a client-side timeout.
  await eventually(
    async () => {
      const rows = await observe(loadTasks);
      return rows && ids.every((id) => TERMINAL.includes(rows.get(id)?.status ?? "missing")) ? true : undefined;
    },
    15_000,
    "every task to reach a terminal status",
  );
  const o = withFreshPool(ctx);
  try {
    const final = await loadTasks(o);
    const statuses = ids.map((id) => final.get(id)!.status);
    // Nothing non-terminal; `failed` only for a task whose attempts ran out; the large majority completed.
    expect(statuses.filter((s) => s !== "completed" && s !== "failed")).toEqual([]);
    for (const id of ids) {
      const t = final.get(id)!;
      if (t.status === "failed") expect({ id, attempt: t.attempt, error: t.error }).toMatchObject({ attempt: t.max_attempts });
    }
    expect(statuses.filter((s) => s === "completed").length).toBeGreaterThanOrEqual(TASKS - 4);
    await expectExactlyOnceEffects(o, final);
  } finally {
    await o.closePool();
  }

  // Both supervisors are healthy enough to stop cleanly. A process whose pool lost a
  // connection mid-query may spend its 5 s database close timeout on the way out
  // (postgres.js 3.4.9 keeps that connection's dead query: porsager/postgres#1097).
  for (const p of sups) p.proc.kill("SIGTERM");
  for (const p of sups) expect((await exitWithin(p, FAST_ENGINE.drainDeadlineMs! + 8_000)).code).toBe(0);
}, 60_000);
