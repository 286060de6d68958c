/**
 * The cancel statement.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority, TaskStatus } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";

export interface CancelOutcome {
  previous: TaskStatus;
  status: TaskStatus;
  priority: Priority;
  agent_id: string;
  /** Who held the running task (its supervisor's worker), for logs. */
  lease_owner: string | null;
  /** How long the cancelled task had been running, in ms (null if it was pending). */
  ran_ms: number | null;
  /** Its progress and claims so far (for the live `cancelled` event). */
  progress_percentage: number;
  attempt: number;
}

/**
 * Cancels in one fenced UPDATE: a pending or running task ends `cancelled` at once, durably,
 * and its lease is cleared. The row lock orders this against a claim or a completion in
 * flight: exactly one of them wins, and the loser's fenced statement matches nothing (a
 * completion that lost writes no result, no history, no figures). The running task's actor
 * is then told by pub/sub to abort (and cancel its SQL). A terminal task is left unchanged.
 */
export async function requestCancel(db: DbOrTx, taskId: string): Promise<CancelOutcome | null> {
  // queryPrepared's row type needs an index signature, which an interface does not have.
  const rows = await queryPrepared<CancelOutcome & Record<string, unknown>>(
    db,
    sql`
    with prev as (select task_id, status, lease_owner, started_at from background_tasks where task_id = ${taskId}::text for update)
    update background_tasks t
    set cancellation_requested = case when prev.status in ('pending', 'running') then true else t.cancellation_requested end,
        status = case when prev.status in ('pending', 'running') then 'cancelled' else t.status end,
        completed_at = case when prev.status in ('pending', 'running') then now() else t.completed_at end,
        lease_token = case when prev.status in ('pending', 'running') then null else t.lease_token end,
        lease_expires_at = case when prev.status in ('pending', 'running') then null else t.lease_expires_at end,
        updated_at = case when prev.status in ('pending', 'running') then now() else t.updated_at end
    from prev where t.task_id = prev.task_id
    returning prev.status as previous, t.status, t.priority, t.agent_id, prev.lease_owner,
      (extract(epoch from now() - prev.started_at) * 1000)::float8 as ran_ms, t.progress_percentage, t.attempt`,
  );
  return rows[0] ?? null;
}
