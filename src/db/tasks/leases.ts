/**
 * Statements on running tasks that keep them alive: progress and lease renewal, fenced by the lease token.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { queryPrepared } from "../prepared.ts";
import { toPgArray } from "../taxonomy.ts";
import type { TaskStatus } from "../../core/tasks.ts";
import { fetchedStatusIs } from "./byId.ts";

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
 * statement was in flight, or while the statement waited for the settle's row locks. `lost` says
 * which, by the task's status read after the renewal (null: no such task). That second read
 * runs only when a lease was missed, and must be a statement of its own: the renewal's own
 * snapshot predates a settle it waited for, and would still show the task running.
 */
export async function renewLeases(
  db: DbOrTx,
  leases: readonly { taskId: string; leaseToken: string }[],
  leaseMs: number,
): Promise<{ renewedTokens: string[]; lost: { leaseToken: string; status: TaskStatus | null }[] }> {
  if (leases.length === 0) return { renewedTokens: [], lost: [] };
  const rows = await queryPrepared<{ lease_token: string }>(
    db,
    sql`
    update background_tasks t
    set lease_expires_at = now() + ${leaseMs}::int * interval '1 millisecond'
    from jsonb_to_recordset(${JSON.stringify(leases.map((l) => ({ task_id: l.taskId, lease_token: l.leaseToken })))}::jsonb)
         as x(task_id text, lease_token uuid)
    where t.task_id = any(${toPgArray(leases.map((l) => l.taskId))}::text[])
      and t.task_id = x.task_id and t.lease_token = x.lease_token and ${fetchedStatusIs("t", "running")}
    returning t.lease_token`,
  );
  const renewedTokens = rows.map((r) => r.lease_token);
  const renewed = new Set(renewedTokens);
  const missed = leases.filter((l) => !renewed.has(l.leaseToken));
  if (missed.length === 0) return { renewedTokens, lost: [] };
  const now = await queryPrepared<{ task_id: string; status: TaskStatus }>(
    db,
    sql`select task_id, status from background_tasks where task_id = any(${toPgArray(missed.map((l) => l.taskId))}::text[])`,
  );
  const statusOf = new Map(now.map((r) => [r.task_id, r.status]));
  return { renewedTokens, lost: missed.map((l) => ({ leaseToken: l.leaseToken, status: statusOf.get(l.taskId) ?? null })) };
}
