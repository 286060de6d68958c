/**
 * Graceful stop of a pool, waiting on messages (never polling):
 *  1. every actor is told to drain: it takes no new task and sends `drained`
 *     once its running tasks have ended;
 *  2. at the deadline, the tasks still running are asked to stop (`shutdown`:
 *     handed back to the queue with their attempt refunded);
 *  3. after the grace period, every thread is terminated; the tasks they
 *     still held are settled by the supervisor (handed back) as the threads
 *     close, each settle bounded in time: what cannot be written is left to the
 *     leases and the reconciler.
 */
import type { WorkerPool } from "./pool.ts";
import type { Changes } from "./changes.ts";

export interface DrainPlan {
  pool: WorkerPool;
  /** Signalled on every `drained` message and every task end. */
  changes: Changes;
  deadlineMs: number;
  graceMs: number;
  /** Step 2: ask every running task to stop. */
  stopAll(): void;
  /** Step 3, before the threads are terminated: no more renewals, what remains is handed back. */
  markStopped(): void;
  /** Longest wait for the closed threads' settles. */
  settleBoundMs: number;
}

export async function drain(plan: DrainPlan): Promise<void> {
  const { pool, changes } = plan;
  for (const slot of pool.live()) pool.post(slot, { type: "drain" });
  await changes.until(() => pool.live().every((s) => s.drained), plan.deadlineMs);
  plan.stopAll();
  await changes.until(() => pool.live().every((s) => s.tasks.size === 0), plan.graceMs + 100);
  plan.markStopped();
  const closing = pool.live();
  for (const slot of closing) pool.retire(slot);
  const everyClosed = Promise.all(closing.map((s) => s.closed)).then(() => true);
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([everyClosed, new Promise((resolve) => (timer = setTimeout(resolve, plan.settleBoundMs)))]);
  clearTimeout(timer);
}
