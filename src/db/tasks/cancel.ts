/**
 * The cancel statement.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority, TaskStatus } from "../../core/tasks.ts";

export interface CancelOutcome {
  previous: TaskStatus;
  status: TaskStatus;
  priority: Priority;
  agent_id: string;
}

/**
 * Requests a cancel in one statement: a pending task ends cancelled at once
 * (the row lock orders this against a concurrent claim, so a cancel that
 * answered while the task was pending always wins); a running task is flagged
 * and its actor told by pub/sub; a terminal one is left unchanged.
 */
export async function requestCancel(db: DbOrTx, taskId: string): Promise<CancelOutcome | null> {
  const rows = await db.execute<{ previous: TaskStatus; status: TaskStatus; priority: Priority; agent_id: string }>(sql`
    with prev as (select task_id, status from background_tasks where task_id = ${taskId} for update)
    update background_tasks t
    set cancellation_requested = case when prev.status in ('pending', 'running') then true else t.cancellation_requested end,
        status = case when prev.status = 'pending' then 'cancelled' else t.status end,
        completed_at = case when prev.status = 'pending' then now() else t.completed_at end,
        updated_at = case when prev.status in ('pending', 'running') then now() else t.updated_at end
    from prev where t.task_id = prev.task_id
    returning prev.status as previous, t.status, t.priority, t.agent_id`);
  return rows[0] ?? null;
}
