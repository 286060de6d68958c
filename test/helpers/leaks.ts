/**
 * The leak check every test file gets through its context's close() (in its afterAll): a file
 * that leaves a Worker thread or a supervisor running fails there, instead of slowing or
 * breaking the files that run after it in the same process.
 */
import { liveWorkerThreads } from "../../src/supervisor/pool.ts";
import { liveSupervisorCount } from "../../src/supervisor/supervisor.ts";

export function leakReport(): string | null {
  const threads = liveWorkerThreads();
  const supervisors = liveSupervisorCount();
  if (threads === 0 && supervisors === 0) return null;
  return `this test file left ${supervisors} supervisor(s) and ${threads} worker thread(s) running; stop every engine it starts`;
}
