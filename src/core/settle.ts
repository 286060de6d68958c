/**
 * What a stopped task becomes: the one place that decides it. Every path that
 * stops a running task (its actor when the handler returns, throws or is
 * aborted; the supervisor when a thread dies or is terminated; the reconciler
 * when a lease lapses) asks `endingFor` and hands the answer to the settle
 * statement (src/db/tasks/settle.ts), which writes it fenced by the lease.
 *
 *  - completed / failed / timeout: terminal, written as is;
 *  - retry: back to pending, or `failed` once the attempts are used up; a
 *    `refund` gives the attempt back (the task was interrupted through no fault
 *    of its own: a shutdown, or a sibling's thread terminated under it);
 *  - null: nothing may be written (the task was cancelled by the API, which
 *    wrote `cancelled` itself, or its lease belongs to someone else now).
 */
import type { CoverageResult } from "../coverage/meter.ts";

/** Why the supervisor stopped a running task. */
export type StopReason = "cancelled" | "timeout" | "shutdown" | "lease_lost";

export type Ending =
  | { kind: "completed"; result: CoverageResult }
  | { kind: "failed"; error: string }
  | { kind: "timeout"; error: string }
  | { kind: "retry"; error: string; refund: boolean };

/** How a task stopped, as whoever saw it stop tells it. */
export type Stop =
  | { how: "returned"; result: CoverageResult }
  /** The handler threw; `transient` when the database connection died under it (not the task's fault). */
  | { how: "threw"; error: unknown; transient: boolean }
  /** The supervisor asked it to stop, and it did (or its thread was terminated for not doing so). */
  | { how: "stopped"; reason: StopReason }
  /** Its thread died without being asked (an uncaught error, process.exit). */
  | { how: "thread_crashed"; code: number }
  /** Its thread was terminated because another task on it ignored its stop. */
  | { how: "sibling_terminated" }
  /** Its lease lapsed: its owner is gone (reconciler). */
  | { how: "lease_expired" };

export const TIMEOUT_ERROR = "task exceeded its time limit";
const MAX_ERROR = 2000;

export function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, MAX_ERROR);
}

export function endingFor(stop: Stop): Ending | null {
  switch (stop.how) {
    case "returned":
      return { kind: "completed", result: stop.result };
    case "threw":
      return stop.transient
        ? { kind: "retry", error: `database connection lost: ${errorText(stop.error)}`.slice(0, MAX_ERROR), refund: false }
        : { kind: "failed", error: errorText(stop.error) };
    case "stopped":
      switch (stop.reason) {
        case "timeout":
          return { kind: "timeout", error: TIMEOUT_ERROR };
        case "shutdown":
          return { kind: "retry", error: "handed back on shutdown", refund: true };
        case "cancelled":
        case "lease_lost":
          return null;
        default:
          return unreachable(stop.reason);
      }
    case "thread_crashed":
      return { kind: "retry", error: `worker thread crashed (exit code ${stop.code})`, refund: false };
    case "sibling_terminated":
      return { kind: "retry", error: "handed back: its worker thread was terminated", refund: true };
    case "lease_expired":
      return { kind: "retry", error: "lease expired (owner died)", refund: false };
    default:
      return unreachable(stop);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled stop: ${JSON.stringify(value)}`);
}
