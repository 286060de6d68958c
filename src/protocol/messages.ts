/**
 * The supervisor <-> worker actor protocol. Flat messages, discriminated on
 * `type`, carrying ids not payloads; every switch over them is exhaustive
 * (see `assertNever`). Runtime guards check what arrives over postMessage.
 */
import { PRIORITIES, type Priority } from "../core/tasks.ts";
import type { StopReason } from "../core/settle.ts";
import type { RedisTarget } from "../queue/connection.ts";

/** What a worker needs to run; handed over in `init`, never read from the environment. */
export interface WorkerSettings {
  databaseUrl: string;
  /** Where Redis is and how it is deployed (src/queue/connection.ts): plain data, so it crosses postMessage. */
  redis: RedisTarget;
  redisPrefix: string;
  confidenceThreshold: number;
  defaultTargetDocuments: number;
  leaseMs: number;
  /** Tasks the actor runs at once; it never holds more ids than it has free slots. */
  concurrency: number;
  /** While it runs tasks, the actor claims at most once per this many ms (0: at once; src/config.ts). */
  claimCooldownMs: number;
  /** How long one blocking pop waits before checking for a drain. */
  popTimeoutSeconds: number;
}

/**
 * Why the supervisor stops a task: a client's cancel, the time limit, a shutdown, or a lease
 * it could not renew (the row is gone or belongs to another owner: write nothing, stop now).
 */
export type CancelReason = StopReason;

/** What a `released` task became: what the actor's requeue wrote, or `unchanged` (nothing written). */
export const RELEASED_STATUSES = ["pending", "failed", "cancelled", "unchanged"] as const;
export type ReleasedStatus = (typeof RELEASED_STATUSES)[number];
/**
 * Why an actor let a task go: handed back on shutdown; the database connection died under the
 * task (requeued); its lease was taken over (nothing written); its bookkeeping failed (nothing
 * written; the lease lapses and the reconciler retries it).
 */
export const RELEASE_REASONS = ["shutdown", "connection_lost", "lease_lost", "bookkeeping_failed"] as const;
export type ReleaseReason = (typeof RELEASE_REASONS)[number];

export type SupervisorMessage =
  | { type: "init"; workerId: string; settings: WorkerSettings }
  | { type: "cancel"; taskId: string; reason: CancelReason }
  | { type: "drain" };

export type WorkerMessage =
  | { type: "ready"; workerId: string }
  /** Claimed. `waitMs` is enqueue to start (PostgreSQL's clock); agentId and priority are for metrics and logs. */
  | { type: "started"; taskId: string; agentId: string; priority: Priority; leaseToken: string; attempt: number; timeoutMs: number; waitMs: number }
  | { type: "progress"; taskId: string; percent: number }
  | { type: "completed"; taskId: string; durationMs: number }
  /**
   * `completed`, `failed` and `timed_out` are sent only after the actor's fenced UPDATE wrote that status and
   * committed. `cancelled`: the task stopped because the API cancelled it (the API's UPDATE wrote the status).
   */
  | { type: "failed"; taskId: string; error: string }
  | { type: "cancelled"; taskId: string }
  | { type: "timed_out"; taskId: string }
  /** No longer this worker's, unfinished: `status` is what the actor wrote (if anything), `reason` why. */
  | { type: "released"; taskId: string; status: ReleasedStatus; reason: ReleaseReason }
  | { type: "drained" }
  /** Popped ids left pending because their agent was at its max_concurrent_refreshes (parked, for metrics). */
  | { type: "deferred"; count: number }
  | { type: "log"; level: "debug" | "info" | "warn" | "error"; msg: string; fields?: Record<string, unknown> };

export function assertNever(value: never): never {
  throw new Error(`unhandled message: ${JSON.stringify(value)}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const str = (v: unknown) => typeof v === "string";
const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);
const oneOf = (values: readonly string[], v: unknown) => typeof v === "string" && values.includes(v);

export function isWorkerMessage(v: unknown): v is WorkerMessage {
  if (!isObject(v) || !str(v.type)) return false;
  switch (v.type as WorkerMessage["type"]) {
    case "ready":
      return str(v.workerId);
    case "started":
      return (
        str(v.taskId) &&
        str(v.agentId) &&
        oneOf(PRIORITIES, v.priority) &&
        str(v.leaseToken) &&
        num(v.attempt) &&
        num(v.timeoutMs) &&
        num(v.waitMs)
      );
    case "progress":
      return str(v.taskId) && num(v.percent);
    case "completed":
      return str(v.taskId) && num(v.durationMs);
    case "failed":
      return str(v.taskId) && str(v.error);
    case "cancelled":
    case "timed_out":
      return str(v.taskId);
    case "released":
      return str(v.taskId) && oneOf(RELEASED_STATUSES, v.status) && oneOf(RELEASE_REASONS, v.reason);
    case "drained":
      return true;
    case "deferred":
      return num(v.count);
    case "log":
      return str(v.level) && str(v.msg);
    default:
      return false;
  }
}

export function isSupervisorMessage(v: unknown): v is SupervisorMessage {
  if (!isObject(v) || !str(v.type)) return false;
  switch (v.type as SupervisorMessage["type"]) {
    case "init":
      return str(v.workerId) && isObject(v.settings);
    case "cancel":
      return str(v.taskId) && (v.reason === "cancelled" || v.reason === "timeout" || v.reason === "shutdown" || v.reason === "lease_lost");
    case "drain":
      return true;
    default:
      return false;
  }
}
