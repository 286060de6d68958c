/**
 * Placeholder for the task engine's supervisor (issue: task engine). It holds
 * the command's shape: it starts, reports, and stops cleanly on a signal.
 */
import type { Runtime } from "../main.ts";

export interface SupervisorHandle {
  stop(): Promise<void>;
}

export function startSupervisor(runtime: Runtime, workers: number): SupervisorHandle {
  runtime.logger.warn({ workers }, "supervisor: the task engine is not built yet; no tasks will run");
  return { stop: async () => {} };
}
