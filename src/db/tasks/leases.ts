/**
 * Statements on running tasks that keep them alive: progress and lease renewal, fenced by the lease token.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { queryPrepared } from "../prepared.ts";

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

/** Extends the leases of the tasks a supervisor runs; returns the leases renewed (by token) and the tasks whose cancel was requested. */
export async function renewLeases(
  db: DbOrTx,
  leases: readonly { taskId: string; leaseToken: string }[],
  leaseMs: number,
): Promise<{ renewedTokens: string[]; cancelRequested: string[] }> {
  if (leases.length === 0) return { renewedTokens: [], cancelRequested: [] };
  const rows = await db.execute<{ task_id: string; lease_token: string; cancellation_requested: boolean }>(sql`
    update background_tasks t
    set lease_expires_at = now() + ${leaseMs} * interval '1 millisecond'
    from jsonb_to_recordset(${JSON.stringify(leases.map((l) => ({ task_id: l.taskId, lease_token: l.leaseToken })))}::jsonb)
         as x(task_id text, lease_token uuid)
    where t.task_id = x.task_id and t.lease_token = x.lease_token and t.status = 'running'
    returning t.task_id, t.lease_token, t.cancellation_requested`);
  return {
    // By token: the same task may be held under an old lease and, after a retry, a new one.
    renewedTokens: rows.map((r) => r.lease_token),
    cancelRequested: rows.filter((r) => r.cancellation_requested).map((r) => r.task_id),
  };
}
