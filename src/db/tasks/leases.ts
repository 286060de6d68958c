/**
 * Statements on running tasks that keep them alive: progress and lease renewal, fenced by the lease token.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { queryPrepared } from "../prepared.ts";
import { toPgArray } from "../taxonomy.ts";
import type { TaskStatus } from "../../core/tasks.ts";

export async function recordProgress(db: DbOrTx, taskId: string, leaseToken: string, percent: number): Promise<boolean> {
  const rows = await queryPrepared(
    db,
    sql`
    update background_tasks set progress_percentage = ${Math.max(0, Math.min(100, Math.round(percent)))}::int, updated_at = now()
    where task_id = ${taskId} and status = 'running' and lease_token = ${leaseToken}::uuid
    returning 1 as ok`,
  );
  return rows.length > 0;
}

/**
 * Extends the leases of the tasks a supervisor runs, in one statement; returns the leases renewed
 * (by token: the same task may be held under an old lease and, after a retry, a new one). A lease
 * missing from the answer is lost: the task was cancelled (a cancel clears the lease), deleted,
 * or taken over after the lease lapsed, or it just ended: its settle committed while this
 * statement was in flight. `lost` says which, by the task's status as this statement found it
 * (null: no such task).
 */
export async function renewLeases(
  db: DbOrTx,
  leases: readonly { taskId: string; leaseToken: string }[],
  leaseMs: number,
): Promise<{ renewedTokens: string[]; lost: { leaseToken: string; status: TaskStatus | null }[] }> {
  if (leases.length === 0) return { renewedTokens: [], lost: [] };
  const rows = await queryPrepared<{ lease_token: string; renewed: boolean; status: TaskStatus | null }>(
    db,
    sql`
    with x as (
      select * from jsonb_to_recordset(${JSON.stringify(leases.map((l) => ({ task_id: l.taskId, lease_token: l.leaseToken })))}::jsonb)
        as x(task_id text, lease_token uuid)),
    renewed as (
      update background_tasks t
      set lease_expires_at = now() + ${leaseMs}::int * interval '1 millisecond'
      from x
      where t.task_id = any(${toPgArray(leases.map((l) => l.taskId))}::text[])
        and t.task_id = x.task_id and t.lease_token = x.lease_token and t.status = 'running'
      returning t.lease_token)
    -- The rows not renewed as they were before this statement (a CTE's update is not visible here).
    select x.lease_token::text as lease_token, r.lease_token is not null as renewed, t.status
    from x left join renewed r on r.lease_token = x.lease_token
      left join background_tasks t on t.task_id = x.task_id and r.lease_token is null`,
  );
  return {
    renewedTokens: rows.filter((r) => r.renewed).map((r) => r.lease_token),
    lost: rows.filter((r) => !r.renewed).map((r) => ({ leaseToken: r.lease_token, status: r.status })),
  };
}
