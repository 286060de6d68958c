/**
 * Retry statements: a new pending task that repeats an ended one (`retry_of` = its id).
 * The unique index on retry_of makes "retried at most once" hold under any concurrency: of
 * two statements retrying the same task, one inserts and the other's `on conflict (retry_of)
 * where retry_of is not null do nothing` waits for it to commit and then writes nothing.
 *
 * A retry is always a new task with `dedupe = false`, like ?force=true: it does not take the
 * agent's deduplication slot (a retry never collides with, or is absorbed into, a newer
 * refresh), and an unforced refresh of the agent still joins it as the agent's oldest pending task.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority, TaskStatus } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";
import { toPgArray } from "../taxonomy.ts";
import { TASK_COLUMNS, toTaskRecord, type RawTask, type TaskRecord } from "./records.ts";
import { filterConditions, whereClause, type TaskFilter } from "./list.ts";

/** The statuses a task may be retried from. */
export const RETRYABLE_STATUSES = ["failed", "timeout", "cancelled"] as const;
export type RetryableStatus = (typeof RETRYABLE_STATUSES)[number];

export const isRetryable = (status: TaskStatus): status is RetryableStatus => (RETRYABLE_STATUSES as readonly string[]).includes(status);

/** What a new task takes from the configuration rather than from the task it retries. */
export interface RetrySettings {
  timeoutMs: number;
  maxAttempts: number;
}

export type RetryOutcome =
  | { kind: "retried"; task: TaskRecord }
  | { kind: "not_found" }
  | { kind: "not_retryable"; status: TaskStatus }
  | { kind: "already_retried"; by: string | null };

/**
 * Retries one task: one INSERT ... SELECT that copies agent, priority and webhook_url from a
 * failed, timed-out or cancelled task. When it writes nothing, a read says why.
 */
export async function retryTask(db: DbOrTx, taskId: string, newTaskId: string, settings: RetrySettings): Promise<RetryOutcome> {
  const [inserted] = await queryPrepared<RawTask>(
    db,
    sql`
    insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe, retry_of)
    select ${newTaskId}::text, agent_id, priority, webhook_url, ${settings.timeoutMs}::int, ${settings.maxAttempts}::int, false, task_id
    from background_tasks
    where task_id = ${taskId}::text and status in ('failed', 'timeout', 'cancelled')
    on conflict (retry_of) where retry_of is not null do nothing
    returning ${TASK_COLUMNS}`,
  );
  if (inserted) return { kind: "retried", task: toTaskRecord(inserted) };
  const [found] = await queryPrepared<{ status: TaskStatus; retried_by: string | null }>(
    db,
    sql`select status, (select r.task_id from background_tasks r where r.retry_of = t.task_id) as retried_by
    from background_tasks t where t.task_id = ${taskId}::text`,
  );
  if (!found) return { kind: "not_found" };
  if (!isRetryable(found.status)) return { kind: "not_retryable", status: found.status };
  return { kind: "already_retried", by: found.retried_by };
}

export interface RetriedTask {
  task_id: string;
  retry_of: string;
  agent_id: string;
  priority: Priority;
  /** Enqueue time in ms (the queue score). */
  score: number;
}

/**
 * Retries the tasks matching `filter` (statuses among RETRYABLE_STATUSES) that were not
 * retried yet, oldest first, at most `newTaskIds.length` of them, in ONE statement: the
 * candidates (`not exists` a row whose retry_of is theirs: a probe of the unique index each),
 * numbered in created_at order, are inserted by one INSERT ... SELECT, each with the id of its
 * rank, so the queue order of the new tasks is the order of the tasks they retry. A candidate
 * a concurrent call retried first is skipped by the `on conflict` on retry_of.
 * `more` is true when tasks beyond the maximum matched (call again for them).
 */
export async function retryMatching(
  db: DbOrTx,
  filter: TaskFilter & { statuses: readonly RetryableStatus[] },
  newTaskIds: readonly string[],
  settings: RetrySettings,
): Promise<{ tasks: RetriedTask[]; more: boolean }> {
  const max = newTaskIds.length;
  // Not prepared: planned with its parameters each time (an operator's call, not the hot path).
  const [row] = await db.execute<{ tasks: RetriedTask[]; matched: number }>(
    sql`
    with candidates as (
      select t.task_id, t.agent_id, t.priority, t.webhook_url, t.created_at from background_tasks t
      ${whereClause([
        ...filterConditions(filter, "t"),
        // Spelled out (the statuses also come as a parameter): it lets the planner use the partial index on terminal statuses.
        sql`t.status in ('failed', 'timeout', 'cancelled')`,
        sql`not exists (select 1 from background_tasks r where r.retry_of = t.task_id)`,
      ])}
      order by t.created_at, t.task_id
      limit ${max + 1}::int
    ), ranked as (
      select c.*, row_number() over (order by c.created_at, c.task_id) as rank from candidates c
    ), inserted as (
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe, retry_of)
      select (${toPgArray(newTaskIds)}::text[])[r.rank], r.agent_id, r.priority, r.webhook_url,
        ${settings.timeoutMs}::int, ${settings.maxAttempts}::int, false, r.task_id
      from ranked r where r.rank <= ${max}::int
      order by r.rank
      on conflict (retry_of) where retry_of is not null do nothing
      returning task_id, retry_of, agent_id, priority, created_at
    )
    select
      (select coalesce(jsonb_agg(jsonb_build_object(
          'task_id', task_id, 'retry_of', retry_of, 'agent_id', agent_id, 'priority', priority,
          'score', floor(extract(epoch from created_at) * 1000)
        ) order by task_id), '[]'::jsonb) from inserted) as tasks,
      (select count(*)::int from candidates) as matched`,
  );
  return { tasks: row!.tasks.map((t) => ({ ...t, score: Number(t.score) })), more: row!.matched > max };
}
