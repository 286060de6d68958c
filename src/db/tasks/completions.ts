/**
 * Statements that end a running task, fenced by its lease token.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { CoverageResult } from "../../coverage/meter.ts";
import { queryPrepared } from "../prepared.ts";

export type CompletionOutcome = "completed" | "cancelled" | "lost_lease";

/**
 * running -> completed with the result, the coverage_history row and the
 * agent's figures in ONE statement (data-modifying CTEs: one implicit
 * transaction, one round trip, one commit). A cancel that arrived while it ran
 * wins: the task ends cancelled and nothing else is written.
 */
export async function completeTask(db: DbOrTx, taskId: string, leaseToken: string, result: CoverageResult): Promise<CompletionOutcome> {
  const at = result.calculated_at;
  const rows = await queryPrepared<{ completed: number }>(
    db,
    sql`
    with done as (
      update background_tasks
      set status = 'completed', result = ${JSON.stringify(result)}::jsonb, completed_at = now(), progress_percentage = 100,
          error = null, lease_token = null, lease_expires_at = null, updated_at = now()
      where task_id = ${taskId} and status = 'running' and lease_token = ${leaseToken}::uuid and not cancellation_requested
      returning agent_id
    ),
    history as (
      insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version, task_id)
      select agent_id, ${at}::timestamptz, ${result.overall_coverage}::float8, ${result.total_documents}::int,
             ${result.total_chunks}::int, ${result.version}::text, ${taskId}::text
      from done
      returning 1
    ),
    agent as (
      update agents a
      set coverage_percent = ${result.overall_coverage}::float8, total_documents = ${result.total_documents}::int,
          total_chunks = ${result.total_chunks}::int, last_coverage_update = ${at}::timestamptz, updated_at = now()
      from done where a.agent_id = done.agent_id
      returning 1
    )
    -- PostgreSQL runs every data-modifying CTE exactly once, referenced or not.
    select count(*)::int as completed from done`,
  );
  if (rows[0]?.completed === 1) return "completed";
  const cancelled = await endTask(db, taskId, leaseToken, "cancelled", null);
  return cancelled ? "cancelled" : "lost_lease";
}

/** running -> failed | cancelled | timeout, fenced by the lease token. */
export async function endTask(
  db: DbOrTx,
  taskId: string,
  leaseToken: string,
  status: "failed" | "cancelled" | "timeout",
  error: string | null,
): Promise<boolean> {
  const rows = await db.execute(sql`
    update background_tasks
    set status = ${status}, error = ${error}, completed_at = now(), lease_token = null, lease_expires_at = null, updated_at = now()
    where task_id = ${taskId} and status = 'running' and lease_token = ${leaseToken}
    returning 1`);
  return rows.length > 0;
}
