/**
 * Statements on running tasks that keep them alive: progress and lease renewal, fenced by the lease token.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { queryPrepared } from "../prepared.ts";
import { toPgArray } from "../taxonomy.ts";

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
 * or taken over after the lease lapsed.
 */
export async function renewLeases(
  db: DbOrTx,
  leases: readonly { taskId: string; leaseToken: string }[],
  leaseMs: number,
): Promise<{ renewedTokens: string[] }> {
  if (leases.length === 0) return { renewedTokens: [] };
  const rows = await queryPrepared<{ lease_token: string }>(
    db,
    sql`
    update background_tasks t
    set lease_expires_at = now() + ${leaseMs}::int * interval '1 millisecond'
    from jsonb_to_recordset(${JSON.stringify(leases.map((l) => ({ task_id: l.taskId, lease_token: l.leaseToken })))}::jsonb)
         as x(task_id text, lease_token uuid)
    where t.task_id = any(${toPgArray(leases.map((l) => l.taskId))}::text[])
      and t.task_id = x.task_id and t.lease_token = x.lease_token and t.status = 'running'
    returning t.lease_token`,
  );
  return { renewedTokens: rows.map((r) => r.lease_token) };
}
