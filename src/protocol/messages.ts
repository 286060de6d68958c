/**
 * The supervisor <-> worker actor protocol. Flat messages, discriminated on
 * `type`, carrying ids not payloads; every switch over them is exhaustive
 * (see `assertNever`). Runtime guards check what arrives over postMessage.
 */

/** What a worker needs to run; handed over in `init`, never read from the environment. */
export interface WorkerSettings {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  confidenceThreshold: number;
  defaultTargetDocuments: number;
  leaseMs: number;
  /** How long one blocking pop waits before checking for a drain. */
  popTimeoutSeconds: number;
}

export type CancelReason = "cancelled" | "timeout" | "shutdown";

export type SupervisorMessage =
  | { type: "init"; workerId: string; settings: WorkerSettings }
  | { type: "cancel"; taskId: string; reason: CancelReason }
  | { type: "drain" };

export type WorkerMessage =
  | { type: "ready"; workerId: string }
  | { type: "started"; taskId: string; leaseToken: string; attempt: number; timeoutMs: number }
  | { type: "progress"; taskId: string; percent: number }
  | { type: "completed"; taskId: string; durationMs: number }
  | { type: "failed"; taskId: string; error: string }
  | { type: "cancelled"; taskId: string }
  | { type: "timed_out"; taskId: string }
  /** Handed back unfinished (shutdown) or lost its lease: no longer this worker's. */
  | { type: "released"; taskId: string }
  | { type: "drained" }
  | { type: "log"; level: "debug" | "info" | "warn" | "error"; msg: string; fields?: Record<string, unknown> };

export function assertNever(value: never): never {
  throw new Error(`unhandled message: ${JSON.stringify(value)}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const str = (v: unknown) => typeof v === "string";
const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);

export function isWorkerMessage(v: unknown): v is WorkerMessage {
  if (!isObject(v) || !str(v.type)) return false;
  switch (v.type as WorkerMessage["type"]) {
    case "ready":
      return str(v.workerId);
    case "started":
      return str(v.taskId) && str(v.leaseToken) && num(v.attempt) && num(v.timeoutMs);
    case "progress":
      return str(v.taskId) && num(v.percent);
    case "completed":
      return str(v.taskId) && num(v.durationMs);
    case "failed":
      return str(v.taskId) && str(v.error);
    case "cancelled":
    case "timed_out":
    case "released":
      return str(v.taskId);
    case "drained":
      return true;
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
      return str(v.taskId) && (v.reason === "cancelled" || v.reason === "timeout" || v.reason === "shutdown");
    case "drain":
      return true;
    default:
      return false;
  }
}
