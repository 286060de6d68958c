/**
 * Enqueue statements: a pending task, or the agent's pending refresh (dedup).
 */
import { sql } from "drizzle-orm";
import type { Db, DbOrTx } from "../client.ts";
import type { Priority } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";
import { TASK_COLUMNS, toTaskRecord, type RawTask, type TaskRecord } from "./records.ts";

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
 * Inserts a pending task, or returns the agent's existing pending refresh (`created` false).
 * An unforced request (`dedupe`) returns the agent's oldest pending task, whatever flag that
 * task was created with (forced, retried, or unforced); only when none is pending does it insert
 * one, holding the agent's deduplication slot. The partial unique index on that slot makes this
 * race-free: of two concurrent unforced requests that found nothing pending, one inserts and the
 * other's insert does nothing, then finds the winner on its next try. A forced request always inserts.
 */
export async function insertTask(db: DbOrTx, task: NewTask): Promise<InsertOutcome> {
  if (!task.dedupe) {
    // Prepared, like every statement of the enqueue path: a lone request (no batch to join) is
    // the low-load case, where parsing and planning each INSERT was a third of its time.
    const [inserted] = await queryPrepared<RawTask>(db, sql`
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe)
      values (${task.taskId}, ${task.agentId}, ${task.priority}, ${task.webhookUrl}, ${task.timeoutMs}, ${task.maxAttempts}, false)
      returning ${TASK_COLUMNS}`);
    return { task: toTaskRecord(inserted!), created: true };
  }
  for (;;) {
    const rows = await queryPrepared<RawTask & { source: "inserted" | "existing" }>(db, sql`
      with existing as (
        select ${TASK_COLUMNS} from background_tasks
        where agent_id = ${task.agentId} and status = 'pending'
        order by created_at, task_id limit 1
      ), inserted as (
        insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe)
        select ${task.taskId}::text, ${task.agentId}::uuid, ${task.priority}::text, ${task.webhookUrl}::text,
          ${task.timeoutMs}::int, ${task.maxAttempts}::int, true
        where not exists (select 1 from existing)
        on conflict (agent_id) where status = 'pending' and dedupe do nothing
        returning ${TASK_COLUMNS}
      )
      select 'inserted' as source, * from inserted
      union all
      select 'existing' as source, * from existing`);
    if (rows[0]) {
      const { source, ...row } = rows[0];
      return { task: toTaskRecord(row), created: source === "inserted" };
    }
    // Nothing was pending in this statement's snapshot, and a concurrent request's task took the
    // slot: that task is committed now (or has started meanwhile), so the next try settles it.
  }
}

export type InsertOutcome = { task: TaskRecord; created: boolean };

/**
 * insertTask for many tasks in one statement (one round trip, one commit): the group
 * commit of enqueues. Rows are written in the given order, and each task gets what
 * insertTask would give it run alone in that order: a forced task is always inserted; an
 * unforced one gets its agent's oldest pending task from before the statement if there is
 * one, else the agent's first task earlier in this statement (forced or not), else it is
 * inserted. A task whose collision cannot be resolved from this statement's snapshot (the
 * pending task it met was written by a concurrent transaction, or started meanwhile) goes
 * through insertTask.
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
    ), existing as (
      select distinct on (agent_id) ${TASK_COLUMNS} from background_tasks
      where agent_id in (select agent_id from input where dedupe) and status = 'pending'
      order by agent_id, created_at, task_id
    ), inserted as (
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe)
      select task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe from input i
      where not i.dedupe
         or (not exists (select 1 from existing e where e.agent_id = i.agent_id)
             and not exists (select 1 from input j where j.agent_id = i.agent_id and j.ord < i.ord))
      order by ord
      on conflict (agent_id) where status = 'pending' and dedupe do nothing
      returning ${TASK_COLUMNS}
    )
    select 'inserted' as source, * from inserted
    union all
    select 'existing' as source, * from existing`,
  );
  const inserted = new Map<string, TaskRecord>();
  const oldestPending = new Map<string, TaskRecord>();
  for (const { source, ...row } of rows) {
    const record = toTaskRecord(row);
    if (source === "inserted") inserted.set(record.task_id, record);
    else oldestPending.set(record.agent_id, record);
  }
  // For an agent with nothing pending before, its first task in this statement is its oldest
  // pending one, for the later ones; unless that first one met a concurrent insert (then the
  // later ones, like it, are settled by insertTask).
  const seen = new Set<string>();
  for (const t of tasks) {
    if (seen.has(t.agentId)) continue;
    seen.add(t.agentId);
    const record = inserted.get(t.taskId);
    if (record && !oldestPending.has(t.agentId)) oldestPending.set(t.agentId, record);
  }
  return tasks.map(async (t): Promise<InsertOutcome> => {
    const record = inserted.get(t.taskId);
    if (record) return { task: record, created: true };
    const existing = oldestPending.get(t.agentId);
    return existing ? { task: existing, created: false } : insertTask(db, t);
  });
}
