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
