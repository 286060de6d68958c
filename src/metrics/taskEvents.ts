/**
 * Task lifecycle telemetry: each event is counted in this process's metrics AND logged as one
 * JSON line, in one call, by the code that made the transition happen (a conditional UPDATE that
 * matched). So each terminal transition is counted and logged exactly once, by the process
 * that made it: the API (a pending task cancelled), the supervisor (what its actors and its own
 * clock ended), or the reconciler (a dead owner's task).
 *
 * Log fields (snake_case, the same on every line): event, task_id, agent_id, worker_id,
 * attempt, priority, duration_ms, wait_ms, reason, error, where known.
 */
import type { Logger } from "pino";
import type { Priority } from "../core/tasks.ts";
import type { Metrics, RecoveryReason, TaskOutcome } from "./registry.ts";

export interface TaskRef {
  task_id: string;
  agent_id?: string;
  worker_id?: string;
  attempt?: number;
  priority?: Priority;
}

export type TaskEvent = "enqueued" | "started" | "completed" | "failed" | "timeout" | "cancelled" | "retried" | "recovered" | "handed_back" | "released";

const OUTCOME_LEVEL: Record<TaskOutcome, "info" | "warn"> = { completed: "info", failed: "warn", timeout: "warn", cancelled: "info" };

const defined = (fields: Record<string, unknown>) => Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));

export class TaskTelemetry {
  constructor(
    readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {}

  private log(level: "info" | "warn" | "debug", event: TaskEvent, fields: Record<string, unknown>) {
    // Two events per task: the line is built only when it will be written (at level warn,
    // Object.entries, fromEntries and object spreads, mostly these lines', were up to a sixth of
    // the supervisor main thread's CPU samples in the engine benchmark, for nothing).
    if (!this.logger.isLevelEnabled(level)) return;
    this.logger[level](defined({ event: `task_${event}`, ...fields }), `task ${event.replace("_", " ")}`);
  }

  /** A new pending task was written (not when an existing pending refresh was returned). */
  enqueued(task: TaskRef & { priority: Priority; request_id?: string }) {
    this.metrics.tasksEnqueued.inc({ priority: task.priority });
    this.log("info", "enqueued", { ...task });
  }

  /** Claimed: wait is enqueue (created_at) to start (started_at). */
  started(task: TaskRef & { priority: Priority; wait_ms: number }) {
    this.metrics.taskWaitSeconds.observe({ priority: task.priority }, Math.max(0, task.wait_ms) / 1000);
    this.log("info", "started", { ...task });
  }

  /**
   * The task reached a terminal status. `duration_ms` is the run (start to end) when it ran;
   * `cancelledWhile` says which state a cancel took effect in.
   */
  finished(task: TaskRef & { outcome: TaskOutcome; duration_ms?: number; error?: string | null; reason?: string }, cancelledWhile?: "pending" | "running") {
    const { outcome, ...fields } = task;
    this.metrics.tasksFinished.inc({ outcome });
    if (task.duration_ms !== undefined) this.metrics.taskRunSeconds.observe({ outcome }, Math.max(0, task.duration_ms) / 1000);
    if (outcome === "cancelled") this.metrics.cancellations.inc({ state: cancelledWhile ?? "running" });
    this.log(OUTCOME_LEVEL[outcome], outcome, { ...fields, error: fields.error ?? undefined });
  }

  /** Back to pending after its owner failed (attempts left): counted as recovered by `reason`. */
  retried(task: TaskRef & { reason: RecoveryReason; duration_ms?: number; error?: string }) {
    this.metrics.tasksRecovered.inc({ reason: task.reason });
    this.log("warn", "retried", { ...task });
  }

  /** A pending task Redis had lost, dispatched again. */
  redispatched(task: TaskRef) {
    this.metrics.tasksRecovered.inc({ reason: "redispatched" });
    this.log("warn", "recovered", { ...task, reason: "redispatched" });
  }

  /** Handed back unfinished (attempt refunded): on shutdown, or because its thread was terminated for a sibling; not a failure, not counted. */
  handedBack(task: TaskRef & { duration_ms?: number; reason?: string }) {
    this.log("info", "handed_back", { reason: "shutdown", ...task });
  }

  /** No longer this worker's, and nothing written (its lease was lost): the new owner decides. */
  released(task: TaskRef & { reason: string; duration_ms?: number }) {
    this.log("warn", "released", { ...task });
  }

  /** Running tasks whose lease lapsed, found by the reconciler. */
  leaseExpired(count: number) {
    if (count > 0) this.metrics.leaseExpiries.inc(count);
  }
}
