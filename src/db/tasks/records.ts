/**
 * The task row as the API and the engine see it, and the columns every statement returns.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { toIso, toIsoOrNull } from "../values.ts";
import type { Priority, TaskStatus } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";

export interface TaskRecord {
  task_id: string;
  agent_id: string;
  task_type: string;
  status: TaskStatus;
  priority: Priority;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  result: unknown;
  error: string | null;
  webhook_url: string | null;
  webhook_retry_count: number;
  cancellation_requested: boolean;
  progress_percentage: number;
  attempt: number;
  max_attempts: number;
  timeout_ms: number;
  lease_owner: string | null;
  updated_at: string;
  /** The task this one retries (POST /tasks/{id}/retry), or null. */
  retry_of: string | null;
  /** The schedule that enqueued this task, or null. */
  schedule_id: string | null;
}

/** The columns of a TaskRecord, in order. */
export const TASK_COLUMN_NAMES = [
  "task_id", "agent_id", "task_type", "status", "priority", "created_at", "started_at", "completed_at",
  "result", "error", "webhook_url", "webhook_retry_count", "cancellation_requested", "progress_percentage",
  "attempt", "max_attempts", "timeout_ms", "lease_owner", "updated_at", "retry_of", "schedule_id",
] as const satisfies readonly (keyof TaskRecord)[];

export const TASK_COLUMNS = sql.raw(TASK_COLUMN_NAMES.join(", "));

export type RawTask = Record<string, unknown>;

export function toTaskRecord(row: RawTask): TaskRecord {
  return {
    ...(row as unknown as TaskRecord),
    created_at: toIso(row.created_at as string),
    started_at: toIsoOrNull(row.started_at as string | null),
    completed_at: toIsoOrNull(row.completed_at as string | null),
    updated_at: toIso(row.updated_at as string),
  };
}

export async function getTask(db: DbOrTx, taskId: string): Promise<TaskRecord | null> {
  const rows = await queryPrepared<RawTask>(db, sql`select ${TASK_COLUMNS} from background_tasks where task_id = ${taskId}`);
  return rows[0] ? toTaskRecord(rows[0]) : null;
}

export interface Redispatch {
  task_id: string;
  agent_id: string;
  priority: Priority;
  created_at: string;
  status: TaskStatus;
  /** Claims so far (after a requeue: the attempt that was lost). */
  attempt: number;
}
