/**
 * Draining on SIGTERM (supervisor as an OS process): no new tasks are taken,
 * running ones finish until the drain deadline, what is still running then is
 * handed back (pending again, attempt refunded, back in Redis), and the process
 * exits 0. Pending tasks stay pending and queued for whoever comes next.
 */
import { beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import type { TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, spawnSupervisor, type SupervisorProcess } from "../helpers/engine.ts";
import {
  e2eSuite,
  createCorpus,
  enqueue,
  expectExactlyOnceEffects,
  exitWithin,
  loadTasks,
  mapLimit,
  queuedIds,
  waitAllTerminal,
  type Corpus,
} from "./support.ts";

let ctx: TestContext;
let corpus: Corpus;
const children = e2eSuite((c) => (ctx = c));
beforeAll(async () => {
  corpus = await createCorpus(ctx);
});

const runningOn = async (p: SupervisorProcess) =>
  (
    await ctx.database.db.execute<{ task_id: string }>(
      sql`select task_id from background_tasks where status = 'running' and starts_with(lease_owner, ${p.id + "-"})`,
    )
  ).map((r) => r.task_id);

async function enqueueSlow(n: number, ms: number): Promise<{ ids: string[]; agents: string[] }> {
  const agents = await mapLimit(Array.from({ length: n }), 6, () => corpus.agent({ mode: "slow", ms }));
  // One at a time, so queue order (and so which ones run first) is enqueue order.
  const ids: string[] = [];
  for (const a of agents) ids.push(await enqueue(ctx, a));
  return { ids, agents };
}

test("SIGTERM: running tasks finish within the drain deadline, the process exits 0, pending ones stay queued for the next supervisor", async () => {
  const sup = children.track(await spawnSupervisor(ctx, { workers: 2, fixture: "scripted" }));
  const { ids } = await enqueueSlow(6, 1500);
  const running = await eventually(async () => {
    const r = await runningOn(sup);
    return r.length === 2 ? r : undefined;
  }, 10_000, "both threads to run a task");

  sup.proc.kill("SIGTERM");
  const { code, elapsedMs } = await exitWithin(sup, FAST_ENGINE.drainDeadlineMs! + 2_000);
  expect(code).toBe(0);
  // The tasks were 1.5 s long: the drain waited for them, not for the whole deadline.
  expect(elapsedMs).toBeLessThan(FAST_ENGINE.drainDeadlineMs! + 1_000);

  const after = await loadTasks(ctx);
  for (const id of running) expect({ id, status: after.get(id)!.status }).toEqual({ id, status: "completed" });
  expect([...after.values()].filter((t) => t.status === "running")).toEqual([]);
  const pending = ids.filter((id) => after.get(id)!.status === "pending");
  expect(pending.length).toBeGreaterThanOrEqual(2);
  for (const id of ids) expect(["completed", "pending"]).toContain(after.get(id)!.status);
  // Still dispatchable: every pending task is in its Redis queue, untouched (never claimed).
  const queued = await queuedIds(ctx);
  for (const id of pending) expect({ id, queued: queued.has(id), attempt: after.get(id)!.attempt }).toEqual({ id, queued: true, attempt: 0 });

  const next = children.track(await spawnSupervisor(ctx, { workers: 2, fixture: "scripted" }));
  const final = await waitAllTerminal(ctx, ids, 20_000);
  for (const id of ids) expect(final.get(id)!.status).toBe("completed");
  for (const id of pending) expect(final.get(id)!.lease_owner?.startsWith(`${next.id}-`)).toBe(true);
  await expectExactlyOnceEffects(ctx, final);
  next.proc.kill("SIGTERM");
  expect((await exitWithin(next, FAST_ENGINE.drainDeadlineMs! + 2_000)).code).toBe(0);
}, 45_000);

test("SIGTERM with a drain deadline shorter than the tasks: running tasks are handed back (pending, attempt refunded, queued), exit 0, a new supervisor completes them", async () => {
  const deadlineMs = 200;
  const sup = children.track(
    await spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: { AGENTQ_DRAIN_DEADLINE_MS: String(deadlineMs) } }),
  );
  const { ids, agents } = await enqueueSlow(3, 10_000);
  const running = await eventually(async () => {
    const r = await runningOn(sup);
    return r.length === 2 ? r : undefined;
  }, 10_000, "both threads to run a task");
  const waiting = ids.filter((id) => !running.includes(id));

  sup.proc.kill("SIGTERM");
  const { code, elapsedMs } = await exitWithin(sup, deadlineMs + FAST_ENGINE.cancelGraceMs! + 3_000);
  expect(code).toBe(0);
  // Nowhere near the 10 s the tasks would have needed.
  expect(elapsedMs).toBeLessThan(3_000);

  const after = await loadTasks(ctx);
  const queued = await queuedIds(ctx);
  for (const id of running) {
    const t = after.get(id)!;
    expect({ id, status: t.status, attempt: t.attempt, lease_owner: t.lease_owner, queued: queued.has(id) }).toEqual({
      id,
      status: "pending",
      attempt: 0,
      lease_owner: null,
      queued: true,
    });
    expect(t.error).toContain("handed back on shutdown");
  }
  for (const id of waiting) expect({ status: after.get(id)!.status, queued: queued.has(id) }).toEqual({ status: "pending", queued: true });

  // The rerun need not take 10 s again: the scripted worker reads the agent's
  // fixture when a task starts, so shorten it before the next supervisor comes up.
  await ctx.database.db.execute(
    sql`update agents set features_config = '{"fixture":{"mode":"slow","ms":300}}'::jsonb where agent_id = any(${`{${agents.join(",")}}`}::uuid[])`,
  );
  const next = children.track(await spawnSupervisor(ctx, { workers: 2, fixture: "scripted" }));
  const final = await waitAllTerminal(ctx, ids, 20_000);
  for (const id of ids) expect(final.get(id)!.status).toBe("completed");
  // The handed-back attempt was refunded: the run that completed is attempt 1.
  for (const id of running) expect(final.get(id)!.attempt).toBe(1);
  await expectExactlyOnceEffects(ctx, final);
  next.proc.kill("SIGTERM");
  expect((await exitWithin(next, FAST_ENGINE.drainDeadlineMs! + 2_000)).code).toBe(0);
}, 45_000);
