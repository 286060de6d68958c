/**
 * Statements on background_tasks. Every status change is ONE conditional
 * UPDATE (`where status = <expected> and lease_token = <token>`): a worker
 * whose lease was taken away cannot overwrite anything (fencing).
 */
import { sql } from "drizzle-orm";
import type { Db, DbOrTx } from "./client.ts";
import { toIso, toIsoOrNull } from "./values.ts";
import type { Priority, TaskStatus } from "../core/tasks.ts";
import type { CoverageResult } from "../coverage/meter.ts";
import { queryPrepared } from "./prepared.ts";

export interface TaskRecord {
  task_id: string;
  agent_id: string;
  task_type: string;
  status: TaskStatus;
  priority: Priority;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  result: unknown;
  error: string | null;
  webhook_url: string | null;
  webhook_retry_count: number;
  cancellation_requested: boolean;
  progress_percentage: number;
  attempt: number;
  max_attempts: number;
  timeout_ms: number;
  lease_owner: string | null;
  updated_at: string;
}

const TASK_COLUMNS = sql.raw(`task_id, agent_id, task_type, status, priority, created_at, started_at, completed_at,
  result, error, webhook_url, webhook_retry_count, cancellation_requested, progress_percentage,
  attempt, max_attempts, timeout_ms, lease_owner, updated_at`);

type RawTask = Record<string, unknown>;

export function toTaskRecord(row: RawTask): TaskRecord {
  return {
    ...(row as unknown as TaskRecord),
    created_at: toIso(row.created_at as string),
    started_at: toIsoOrNull(row.started_at as string | null),
    completed_at: toIsoOrNull(row.completed_at as string | null),
    updated_at: toIso(row.updated_at as string),
  };
}

export interface NewTask {
  taskId: string;
  agentId: string;
  priority: Priority;
  webhookUrl: string | null;
  timeoutMs: number;
  maxAttempts: number;
  /** false for ?force=true: always a new task. */
  dedupe: boolean;
}

/**
 * Inserts a pending task, or returns the agent's existing pending refresh
 * (`created` false). The partial unique index makes this race-free.
 */
export async function insertTask(db: DbOrTx, task: NewTask): Promise<InsertOutcome> {
  for (;;) {
    const inserted = await db.execute<RawTask>(sql`
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe)
      values (${task.taskId}, ${task.agentId}, ${task.priority}, ${task.webhookUrl}, ${task.timeoutMs}, ${task.maxAttempts}, ${task.dedupe})
      on conflict (agent_id) where status = 'pending' and dedupe do nothing
      returning ${TASK_COLUMNS}`);
    if (inserted[0]) return { task: toTaskRecord(inserted[0]), created: true };
    const existing = await db.execute<RawTask>(sql`
      select ${TASK_COLUMNS} from background_tasks
      where agent_id = ${task.agentId} and status = 'pending' and dedupe limit 1`);
    if (existing[0]) return { task: toTaskRecord(existing[0]), created: false };
    // The pending task we collided with started meanwhile: try again.
  }
}

export type InsertOutcome = { task: TaskRecord; created: boolean };

/**
 * insertTask for many tasks in one statement (one round trip, one commit): the group
 * commit of enqueues. Rows are written in the given order, so among several deduplicated
 * requests for one agent the first creates the task and the rest get it. A task whose
 * collision cannot be resolved from this statement's snapshot (the pending task it met
 * was written by a concurrent transaction, or started meanwhile) goes through insertTask.
 * Throws when the statement fails (e.g. one unknown agent), having written nothing: callers
 * then write the tasks one by one so that only the bad one fails. Once the statement has
 * committed, each task's outcome settles on its own (one per task, in order).
 */
export async function insertTasks(db: Db, tasks: readonly NewTask[]): Promise<Promise<InsertOutcome>[]> {
  const input = JSON.stringify(
    tasks.map((t, ord) => ({
      ord,
      task_id: t.taskId,
      agent_id: t.agentId,
      priority: t.priority,
      webhook_url: t.webhookUrl,
      timeout_ms: t.timeoutMs,
      max_attempts: t.maxAttempts,
      dedupe: t.dedupe,
    })),
  );
  const rows = await queryPrepared<RawTask & { source: "inserted" | "existing" }>(
    db,
    sql`
    with input as (
      select * from jsonb_to_recordset(${input}::jsonb) as i(ord int, task_id text, agent_id uuid, priority text,
        webhook_url text, timeout_ms int, max_attempts int, dedupe boolean)
    ), inserted as (
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe)
      select task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe from input order by ord
      on conflict (agent_id) where status = 'pending' and dedupe do nothing
      returning ${TASK_COLUMNS}
    )
    select 'inserted' as source, * from inserted
    union all
    select 'existing' as source, ${TASK_COLUMNS} from background_tasks
    where agent_id in (select agent_id from input where dedupe) and status = 'pending' and dedupe`,
  );
  const inserted = new Map<string, TaskRecord>();
  const pendingOfAgent = new Map<string, TaskRecord>();
  for (const { source, ...row } of rows) {
    const record = toTaskRecord(row);
    if (source === "inserted") inserted.set(record.task_id, record);
    else pendingOfAgent.set(record.agent_id, record);
  }
  // A deduplicated task created by this statement is the pending refresh of its agent for the later requests.
  for (const t of tasks) {
    const record = inserted.get(t.taskId);
    if (record && t.dedupe && !pendingOfAgent.has(t.agentId)) pendingOfAgent.set(t.agentId, record);
  }
  return tasks.map(async (t): Promise<InsertOutcome> => {
    const record = inserted.get(t.taskId);
    if (record) return { task: record, created: true };
    const existing = pendingOfAgent.get(t.agentId);
    return existing ? { task: existing, created: false } : insertTask(db, t);
  });
}

export async function getTask(db: DbOrTx, taskId: string): Promise<TaskRecord | null> {
  const rows = await db.execute<RawTask>(sql`select ${TASK_COLUMNS} from background_tasks where task_id = ${taskId}`);
  return rows[0] ? toTaskRecord(rows[0]) : null;
}

export interface Claim {
  taskId: string;
  agentId: string;
  leaseToken: string;
  attempt: number;
  timeoutMs: number;
  priority: Priority;
  /** Enqueue (created_at) to this start (started_at), in ms; for metrics and logs. */
  waitMs: number;
  /** The agent's scope, read in the same statement so the task needs no second lookup. */
  agent: { agent_id: string; taxonomy_node_ids: string[]; taxonomy_version: string };
}

/** pending -> running, unless the task was cancelled or claimed by someone else meanwhile. */
export async function claimTask(db: DbOrTx, taskId: string, owner: string, leaseMs: number): Promise<Claim | null> {
  const rows = await queryPrepared<{
    task_id: string;
    agent_id: string;
    lease_token: string;
    attempt: number;
    timeout_ms: number;
    priority: Priority;
    wait_ms: number;
    taxonomy_node_ids: string[];
    taxonomy_version: string;
  }>(
    db,
    sql`
    update background_tasks t
    set status = 'running', attempt = t.attempt + 1, lease_token = gen_random_uuid(), lease_owner = ${owner},
        lease_expires_at = now() + ${leaseMs}::int * interval '1 millisecond', started_at = now(),
        progress_percentage = 0, queue_position = null, updated_at = now()
    from agents a
    where t.task_id = ${taskId} and t.status = 'pending' and not t.cancellation_requested and a.agent_id = t.agent_id
    returning t.task_id, t.agent_id, t.lease_token, t.attempt, t.timeout_ms, t.priority,
      (extract(epoch from now() - t.created_at) * 1000)::float8 as wait_ms, a.taxonomy_node_ids, a.taxonomy_version`,
  );
  const r = rows[0];
  return r
    ? {
        taskId: r.task_id,
        agentId: r.agent_id,
        leaseToken: r.lease_token,
        attempt: r.attempt,
        timeoutMs: r.timeout_ms,
        priority: r.priority,
        waitMs: Number(r.wait_ms),
        agent: { agent_id: r.agent_id, taxonomy_node_ids: r.taxonomy_node_ids, taxonomy_version: r.taxonomy_version },
      }
    : null;
}

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

export interface Redispatch {
  task_id: string;
  agent_id: string;
  priority: Priority;
  created_at: string;
  status: TaskStatus;
  /** Claims so far (after a requeue: the attempt that was lost). */
  attempt: number;
}

/**
 * The owner of a running task died or gave it back. With attempts left (or
 * `refund`, for a task handed back unfinished on shutdown) it goes back to
 * pending; otherwise it ends failed. A requested cancel ends it cancelled.
 */
export async function requeueTask(
  db: DbOrTx,
  taskId: string,
  leaseToken: string,
  reason: string,
  refund = false,
): Promise<Redispatch | null> {
  const rows = await db.execute<RawTask>(sql`
    update background_tasks
    set attempt = attempt - ${refund ? 1 : 0},
        status = case when cancellation_requested then 'cancelled'
                      when attempt - ${refund ? 1 : 0} >= max_attempts then 'failed' else 'pending' end,
        error = case when cancellation_requested then null
                     when attempt - ${refund ? 1 : 0} >= max_attempts then ${`gave up after attempts: ${reason}`}
                     else ${reason} end,
        completed_at = case when cancellation_requested or attempt - ${refund ? 1 : 0} >= max_attempts then now() end,
        dedupe = false, lease_token = null, lease_owner = null, lease_expires_at = null, started_at = null,
        progress_percentage = 0, updated_at = now()
    where task_id = ${taskId} and status = 'running' and lease_token = ${leaseToken}
    returning task_id, agent_id, priority, created_at, status, attempt`);
  return rows[0] ? { ...(rows[0] as unknown as Redispatch), created_at: toIso(rows[0].created_at as string) } : null;
}

/** Same as requeueTask for every running task whose lease has lapsed (owner gone). */
export async function requeueExpiredLeases(db: DbOrTx, limit = 500): Promise<Redispatch[]> {
  const rows = await db.execute<RawTask>(sql`
    update background_tasks t
    set status = case when t.cancellation_requested then 'cancelled'
                      when t.attempt >= t.max_attempts then 'failed' else 'pending' end,
        error = case when t.cancellation_requested then null
                     when t.attempt >= t.max_attempts then 'gave up after attempts: lease expired (owner died)'
                     else 'lease expired (owner died); retrying' end,
        completed_at = case when t.cancellation_requested or t.attempt >= t.max_attempts then now() end,
        dedupe = false, lease_token = null, lease_owner = null, lease_expires_at = null, started_at = null,
        progress_percentage = 0, updated_at = now()
    from (select task_id from background_tasks
          where status = 'running' and lease_expires_at < now()
          order by lease_expires_at limit ${limit} for update skip locked) expired
    where t.task_id = expired.task_id
    returning t.task_id, t.agent_id, t.priority, t.created_at, t.status, t.attempt`);
  return rows.map((r) => ({ ...(r as unknown as Redispatch), created_at: toIso(r.created_at as string) }));
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

/** Pending tasks not touched for `olderThanMs`: candidates for re-dispatch if Redis lost them. */
export async function stalePendingTasks(db: DbOrTx, olderThanMs: number, limit = 1000): Promise<Redispatch[]> {
  const rows = await db.execute<RawTask>(sql`
    select task_id, agent_id, priority, created_at, status, attempt from background_tasks
    where status = 'pending' and updated_at < now() - ${olderThanMs} * interval '1 millisecond'
    order by created_at limit ${limit}`);
  return rows.map((r) => ({ ...(r as unknown as Redispatch), created_at: toIso(r.created_at as string) }));
}

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

export interface HistoryEntry {
  timestamp: string;
  overall_coverage: number;
  total_documents: number;
  total_chunks: number;
  version: string;
}

export async function listCoverageHistory(
  db: DbOrTx,
  agentId: string,
  range: { start?: string; end?: string; limit: number; offset: number },
): Promise<{ history: HistoryEntry[]; total: number }> {
  const start = range.start ?? null;
  const end = range.end ?? null;
  const where = sql`agent_id = ${agentId}
    and (${start}::timestamptz is null or timestamp >= ${start}::timestamptz)
    and (${end}::timestamptz is null or timestamp <= ${end}::timestamptz)`;
  const rows = await db.execute<RawTask>(sql`
    select timestamp, overall_coverage, total_documents, total_chunks, version
    from coverage_history where ${where}
    order by timestamp desc, history_id desc limit ${range.limit} offset ${range.offset}`);
  const [count] = await db.execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where ${where}`);
  return {
    history: rows.map((r) => ({
      timestamp: toIso(r.timestamp as string),
      overall_coverage: Number(r.overall_coverage),
      total_documents: Number(r.total_documents),
      total_chunks: Number(r.total_chunks),
      version: String(r.version),
    })),
    total: count!.n,
  };
}

/** Retention: deletes in batches so a large backlog never holds long locks. */
export async function deleteExpired(db: DbOrTx, taskRetentionMs: number, historyRetentionMs: number, batch = 5000) {
  let tasks = 0;
  let history = 0;
  for (;;) {
    const r = await db.execute(sql`
      delete from background_tasks where task_id in (
        select task_id from background_tasks
        where status in ('completed', 'failed', 'cancelled', 'timeout')
          and completed_at < now() - ${taskRetentionMs} * interval '1 millisecond'
        limit ${batch})
      returning 1`);
    tasks += r.length;
    if (r.length < batch) break;
  }
  for (;;) {
    const r = await db.execute(sql`
      delete from coverage_history where history_id in (
        select history_id from coverage_history where timestamp < now() - ${historyRetentionMs} * interval '1 millisecond' limit ${batch})
      returning 1`);
    history += r.length;
    if (r.length < batch) break;
  }
  return { tasks, history };
}
