/**
 * The settle statement: writes what stopped tasks become (src/core/settle.ts)
 * for a whole batch in ONE statement and one commit: the task rows, their
 * coverage_history rows, the agents' figures (the newest result per agent) and,
 * through the outbox trigger (drizzle/0004), the webhook deliveries.
 *
 * Each row is fenced by its own lease token: a row whose lease was lost (or
 * that the API cancelled meanwhile: a cancel clears the lease) matches nothing,
 * and nothing of it is written. The caller learns, per lease, what was written.
 * A retry that sends its task back to pending also writes the attempt it ended to task_attempts
 * (src/db/tasks/attempts.ts); an ending that ends the task writes nothing more.
 */
import { sql, type SQL } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority, TaskStatus } from "../../core/tasks.ts";
import type { Ending } from "../../core/settle.ts";
import { queryPrepared } from "../prepared.ts";
import { toIso } from "../values.ts";
import { toPgArray } from "../taxonomy.ts";
import { recordRequeuedAttempts, requeuedAttemptColumns } from "./attempts.ts";
import { fetchedStatusIs } from "./byId.ts";

export interface Settling {
  taskId: string;
  leaseToken: string;
  ending: Ending;
}

/** What the statement wrote for one lease. */
export interface Settled {
  taskId: string;
  agentId: string;
  leaseToken: string;
  /** completed, failed, timeout, or pending (a retry with attempts left). */
  status: TaskStatus;
  priority: Priority;
  createdAt: string;
  /** Claims so far (after a retry: the attempt that was lost, less a refund). */
  attempt: number;
  error: string | null;
}

/**
 * The assignments for a running row `t` that input row `i` (kind, refund, error, result) ends.
 * The retry-or-fail rule lives here and nowhere else.
 */
export function endingAssignments(): SQL {
  const outOfAttempts = sql.raw(`t.attempt - i.refund >= t.max_attempts`);
  const staysPending = sql`(i.kind = 'retry' and not ${outOfAttempts})`;
  return sql`
    status = case when i.kind <> 'retry' then i.kind when ${outOfAttempts} then 'failed' else 'pending' end,
    attempt = t.attempt - i.refund,
    result = case when i.kind = 'completed' then i.result else t.result end,
    error = case when i.kind = 'completed' then null
                 when i.kind = 'retry' and ${outOfAttempts} then 'gave up after attempts: ' || i.error
                 else i.error end,
    completed_at = case when ${staysPending} then null else now() end,
    started_at = case when ${staysPending} then null else t.started_at end,
    progress_percentage = case when i.kind = 'completed' then 100 when ${staysPending} then 0 else t.progress_percentage end,
    -- A retried task is pending again but never the deduplicated refresh a new request joins.
    dedupe = case when ${staysPending} then false else t.dedupe end,
    lease_token = null, lease_expires_at = null,
    lease_owner = case when ${staysPending} then null else t.lease_owner end,
    updated_at = now()`;
}

type SettledRow = {
  task_id: string;
  agent_id: string;
  lease_token: string;
  status: TaskStatus;
  priority: Priority;
  created_at: string | Date;
  attempt: number;
  error: string | null;
};

export async function settleTasks(db: DbOrTx, batch: readonly Settling[]): Promise<Map<string, Settled>> {
  if (batch.length === 0) return new Map();
  const input = JSON.stringify(
    batch.map(({ taskId, leaseToken, ending }) => {
      const row = { task_id: taskId, lease_token: leaseToken, kind: ending.kind, refund: 0, error: null as string | null, result: null as unknown };
      if (ending.kind === "completed") {
        const r = ending.result;
        return {
          ...row,
          result: r,
          overall_coverage: r.overall_coverage,
          total_documents: r.total_documents,
          total_chunks: r.total_chunks,
          version: r.version,
          calculated_at: r.calculated_at,
        };
      }
      return { ...row, error: ending.error, refund: ending.kind === "retry" && ending.refund ? 1 : 0 };
    }),
  );
  const rows = await queryPrepared<SettledRow>(
    db,
    sql`
    with input as (
      select * from jsonb_to_recordset(${input}::jsonb) as i(task_id text, lease_token uuid, kind text, refund int, error text,
        result jsonb, overall_coverage float8, total_documents int, total_chunks int, version text, calculated_at timestamptz)
    ),
    ended as (
      update background_tasks t set ${endingAssignments()}
      from input i
      -- The id list lets the planner fetch the rows by primary key (it cannot see into the jsonb).
      where t.task_id = any(${toPgArray(batch.map((b) => b.taskId))}::text[])
        and t.task_id = i.task_id and ${fetchedStatusIs("t", "running")} and t.lease_token = i.lease_token
      returning t.task_id, t.agent_id, i.lease_token, t.status, t.priority, t.created_at, t.attempt, t.error,
        i.overall_coverage, i.total_documents, i.total_chunks, i.version, i.calculated_at, ${requeuedAttemptColumns}
    ),
    -- A retry that sent its task back to pending keeps the attempt it ended (the task's timeline).
    attempts as (${recordRequeuedAttempts}),
    history as (
      insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version, task_id)
      select agent_id, calculated_at, overall_coverage, total_documents, total_chunks, version, task_id
      from ended where status = 'completed'
      returning 1
    ),
    newest as (
      select distinct on (agent_id) agent_id, overall_coverage, total_documents, total_chunks, calculated_at
      from ended where status = 'completed'
      order by agent_id, calculated_at desc
    ),
    -- Agent rows are locked in one order, so two batches touching the same agents cannot deadlock.
    locked as (
      select a.agent_id from agents a where a.agent_id in (select agent_id from newest) order by a.agent_id for no key update
    ),
    figures as (
      update agents a
      set coverage_percent = n.overall_coverage, total_documents = n.total_documents, total_chunks = n.total_chunks,
          last_coverage_update = n.calculated_at, updated_at = now()
      from newest n
      where a.agent_id = n.agent_id and a.agent_id in (select agent_id from locked)
        -- A result older than the one the agent shows (a slow batch) never replaces it.
        and (a.last_coverage_update is null or a.last_coverage_update <= n.calculated_at)
      returning 1
    )
    -- PostgreSQL runs every data-modifying CTE exactly once, referenced or not.
    select task_id, agent_id, lease_token, status, priority, created_at, attempt, error from ended`,
  );
  return new Map(
    rows.map((r) => [
      r.lease_token,
      {
        taskId: r.task_id,
        agentId: r.agent_id,
        leaseToken: r.lease_token,
        status: r.status,
        priority: r.priority,
        createdAt: toIso(r.created_at as string),
        attempt: r.attempt,
        error: r.error,
      },
    ]),
  );
}

/** settleTasks for one task: what was written, or null when the lease was lost (nothing written). */
export async function settleTask(db: DbOrTx, taskId: string, leaseToken: string, ending: Ending): Promise<Settled | null> {
  return (await settleTasks(db, [{ taskId, leaseToken, ending }])).get(leaseToken) ?? null;
}

/**
 * Which of these leases' tasks were ended by their own holder: terminal, with the holder as
 * lease_owner and the same attempt. The supervisor asks it for the tasks of a thread that died
 * after its ending had committed but before it could say so, so that the ending is counted as
 * what it was (a completion, say) and not as a lost lease.
 */
export async function endedByHolder(
  db: DbOrTx,
  held: readonly { taskId: string; owner: string; attempt: number }[],
): Promise<Map<string, { status: TaskStatus; error: string | null }>> {
  if (held.length === 0) return new Map();
  const rows = await queryPrepared<{ task_id: string; status: TaskStatus; error: string | null }>(
    db,
    sql`
    select t.task_id, t.status, t.error
    from background_tasks t
    join jsonb_to_recordset(${JSON.stringify(held.map((h) => ({ task_id: h.taskId, owner: h.owner, attempt: h.attempt })))}::jsonb)
         as h(task_id text, owner text, attempt int)
      on t.task_id = h.task_id and t.lease_owner = h.owner and t.attempt = h.attempt
    where t.task_id = any(${toPgArray(held.map((h) => h.taskId))}::text[])
      and t.status in ('completed', 'failed', 'timeout')`,
  );
  return new Map(rows.map((r) => [r.task_id, { status: r.status, error: r.error }]));
}
