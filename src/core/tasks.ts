/**
 * Task states. Every change is one conditional UPDATE in src/db/tasks/; this
 * module only names the states and which moves are legal.
 *
 *            claim                 complete
 *   pending ───────▶ running ──┬──────────────▶ completed
 *      │  ▲                    ├─ task error ──▶ failed
 *      │  └── lease expired /  ├─ cancel ──────▶ cancelled
 *      │      thread crashed / └─ time limit ──▶ timeout
 *      │      handed back on shutdown (attempts left; else failed)
 *      └── cancel ───────────────────────────▶ cancelled
 */
export const TASK_STATUSES = ["pending", "running", "completed", "failed", "cancelled", "timeout"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const TERMINAL_STATUSES = ["completed", "failed", "cancelled", "timeout"] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

export const PRIORITIES = ["high", "medium", "low"] as const;
export type Priority = (typeof PRIORITIES)[number];

export const TASK_TYPE = "coverage_refresh";

export const isTerminal = (status: string): status is TerminalStatus =>
  (TERMINAL_STATUSES as readonly string[]).includes(status);

const LEGAL: Record<TaskStatus, readonly TaskStatus[]> = {
  pending: ["running", "cancelled", "failed"],
  running: ["completed", "failed", "cancelled", "timeout", "pending"],
  completed: [],
  failed: [],
  cancelled: [],
  timeout: [],
};

export const canMove = (from: TaskStatus, to: TaskStatus) => LEGAL[from].includes(to);

/** `agent-coverage-<uuid v7>`: the seed's shape, time-ordered so ids sort by creation. */
export const newTaskId = () => `agent-coverage-${Bun.randomUUIDv7()}`;
export const TASK_ID_PATTERN = "^agent-coverage-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$";
