/**
 * The operator console's reads: the task list (newest first, keyset-paged on
 * (created_at, task_id)) and the task counts. Each is one statement whose cost is bounded by
 * an index range, never by the size of the table's history (EXPLAIN output: README, "Task
 * list and stats").
 */
import { sql, type SQL } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { toIso, toIsoOrNull } from "../values.ts";
import { PRIORITIES, TERMINAL_STATUSES, type Priority, type TaskStatus, type TerminalStatus } from "../../core/tasks.ts";
import { toPgArray } from "../taxonomy.ts";
import { TASK_COLUMN_NAMES, toTaskRecord, type RawTask, type TaskRecord } from "./records.ts";

/** A task without its result: what lists show (a coverage result can be large; GET /tasks/{id} has it). */
export type TaskSummary = Omit<TaskRecord, "result">;

export const SUMMARY_COLUMNS = sql.raw(TASK_COLUMN_NAMES.filter((c) => c !== "result").join(", "));

export function toTaskSummary(row: RawTask): TaskSummary {
  const { result: _, ...summary } = toTaskRecord(row);
  return summary;
}

export interface TaskFilter {
  statuses?: readonly TaskStatus[];
  agentId?: string;
  priority?: Priority;
  /** Inclusive lower bound of created_at (a timestamp PostgreSQL accepts). */
  createdAfter?: string;
  /** Exclusive upper bound of created_at. */
  createdBefore?: string;
}

/**
 * A position in the newest-first order: the (created_at, task_id) of the last task of a page.
 * `createdAt` is UTC with microseconds (`YYYY-MM-DDTHH:MM:SS.ffffff`), exactly as stored, so
 * no task that shares a millisecond with it is skipped or repeated.
 */
export interface ListPosition {
  createdAt: string;
  taskId: string;
}

/** The filter as SQL conditions (an empty list: no condition). */
export function filterConditions(filter: TaskFilter, alias = ""): SQL[] {
  const col = (name: string) => sql.raw(alias ? `${alias}.${name}` : name);
  const where: SQL[] = [];
  if (filter.statuses?.length) where.push(sql`${col("status")} = any(${toPgArray([...filter.statuses])}::text[])`);
  if (filter.agentId !== undefined) where.push(sql`${col("agent_id")} = ${filter.agentId}::uuid`);
  if (filter.priority !== undefined) where.push(sql`${col("priority")} = ${filter.priority}::text`);
  if (filter.createdAfter !== undefined) where.push(sql`${col("created_at")} >= ${filter.createdAfter}::timestamptz`);
  if (filter.createdBefore !== undefined) where.push(sql`${col("created_at")} < ${filter.createdBefore}::timestamptz`);
  return where;
}

export const whereClause = (conditions: SQL[]) => (conditions.length ? sql`where ${sql.join(conditions, sql` and `)}` : sql``);

/**
 * One page of tasks, newest first (created_at desc, task_id desc), after `after` when given.
 * Reads `limit + 1` rows to know whether there is a next page. `nulls last` is the index's
 * order (the columns are never null): without it the planner cannot read the index in order
 * and sorts the whole table for every page. The row comparison
 * `(created_at, task_id) < (...)` is a range of background_tasks_created_task_idx, so a page
 * deep in the list costs what the first one does (no OFFSET); tasks created meanwhile sort
 * before the position and never shift later pages.
 */
export async function listTasks(
  db: DbOrTx,
  filter: TaskFilter,
  page: { limit: number; after?: ListPosition },
): Promise<{ tasks: TaskSummary[]; next: ListPosition | null }> {
  const where = filterConditions(filter);
  if (page.after)
    where.push(sql`(created_at, task_id) < ((${page.after.createdAt}::timestamp at time zone 'UTC'), ${page.after.taskId}::text)`);
  // Not prepared: each filter combination is planned with its values (a partial index may serve it).
  const rows = await db.execute<RawTask & { position_at: string }>(
    sql`select ${SUMMARY_COLUMNS}, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as position_at
    from background_tasks ${whereClause(where)}
    order by created_at desc nulls last, task_id desc nulls last
    limit ${page.limit + 1}::int`,
  );
  const more = rows.length > page.limit;
  const shown = more ? rows.slice(0, page.limit) : rows;
  const last = shown[shown.length - 1];
  return {
    tasks: shown.map(({ position_at: _, ...row }) => toTaskSummary(row)),
    next: more && last ? { createdAt: last.position_at, taskId: last.task_id as string } : null,
  };
}

export type PriorityCounts = Record<Priority, number> & { total: number };

export interface TaskStats {
  /** Every pending and running task, exactly (the live backlog). */
  live: { total: number; by_status: Record<"pending" | "running", PriorityCounts> };
  /** Tasks that ended (completed_at) in the window; older terminal tasks are not counted. */
  last_hour: { since: string; window_seconds: number; finished: number; by_status: Record<TerminalStatus, PriorityCounts> };
  oldest_pending: { task_id: string; created_at: string; age_seconds: number } | null;
  calculated_at: string;
}

export const STATS_WINDOW_SECONDS = 3600;

const emptyCounts = (): PriorityCounts => ({ high: 0, medium: 0, low: 0, total: 0 });

/**
 * Counts for the console, in one statement of three bounded parts:
 * - live tasks by status and priority: `status = 'pending'` and `status = 'running'` read the
 *   partial indexes on those statuses, so they cost the backlog, not the finished tasks kept
 *   for retention;
 * - tasks that ended in the last hour by status and priority: a range of
 *   background_tasks_status_completed_idx per terminal status (`status = s and completed_at >=
 *   now() - 1 h`); there is deliberately no count of every terminal task kept;
 * - the oldest pending task: the first entry of background_tasks_pending_created_idx.
 */
export async function taskStats(db: DbOrTx): Promise<TaskStats> {
  const [row] = await db.execute<{
    live: [TaskStatus, Priority, number][];
    recent: [TaskStatus, Priority, number][];
    oldest_task_id: string | null;
    oldest_created_at: string | null;
    oldest_age_seconds: number | null;
    since: string;
    now: string;
  }>(
    sql`
    with live as (
      -- One arm per status, so that each reads its partial index (pending: by created_at; running: by lease).
      select 'pending' as status, priority, count(*)::int as n from background_tasks where status = 'pending' group by priority
      union all
      select 'running' as status, priority, count(*)::int as n from background_tasks where status = 'running' group by priority
    ), recent as (
      -- One arm per status: each is a (status = s, completed_at >= since) range of the partial index
      -- on terminal statuses. (All four in one IN list would equal the index's predicate: the
      -- planner then drops the status condition and reads the whole index for the time range.)
      ${sql.join(
        TERMINAL_STATUSES.map(
          (status) => sql`select ${sql.raw(`'${status}'`)} as status, priority, count(*)::int as n from background_tasks
            where status = ${sql.raw(`'${status}'`)} and completed_at >= now() - ${STATS_WINDOW_SECONDS}::int * interval '1 second'
            group by priority`,
        ),
        sql` union all `,
      )}
    ), oldest as (
      select task_id, created_at from background_tasks
      where status = 'pending'
      order by created_at, task_id
      limit 1
    )
    select
      (select coalesce(jsonb_agg(jsonb_build_array(status, priority, n)), '[]'::jsonb) from live) as live,
      (select coalesce(jsonb_agg(jsonb_build_array(status, priority, n)), '[]'::jsonb) from recent) as recent,
      (select task_id from oldest) as oldest_task_id,
      (select created_at from oldest) as oldest_created_at,
      (select greatest(0, extract(epoch from now() - created_at))::float8 from oldest) as oldest_age_seconds,
      now() - ${STATS_WINDOW_SECONDS}::int * interval '1 second' as since,
      now() as now`,
  );
  const live = { pending: emptyCounts(), running: emptyCounts() };
  const recent = Object.fromEntries(TERMINAL_STATUSES.map((s) => [s, emptyCounts()])) as Record<TerminalStatus, PriorityCounts>;
  const add = (into: PriorityCounts | undefined, priority: Priority, n: number) => {
    if (!into || !PRIORITIES.includes(priority)) return;
    into[priority] += n;
    into.total += n;
  };
  for (const [status, priority, n] of row!.live) add(live[status as "pending" | "running"], priority, n);
  for (const [status, priority, n] of row!.recent) add(recent[status as TerminalStatus], priority, n);
  return {
    live: { total: live.pending.total + live.running.total, by_status: live },
    last_hour: {
      since: toIso(row!.since),
      window_seconds: STATS_WINDOW_SECONDS,
      finished: TERMINAL_STATUSES.reduce((sum, s) => sum + recent[s].total, 0),
      by_status: recent,
    },
    oldest_pending:
      row!.oldest_task_id === null
        ? null
        : { task_id: row!.oldest_task_id, created_at: toIsoOrNull(row!.oldest_created_at)!, age_seconds: Number(row!.oldest_age_seconds ?? 0) },
    calculated_at: toIso(row!.now),
  };
}
