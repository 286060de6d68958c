/**
 * The bulk refresh statement: one refresh per agent, with the single path's deduplication,
 * in ONE statement (one INSERT ... SELECT), and unknown agent ids reported instead of failing
 * the others.
 */
import { sql, type SQL } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";
import { toPgArray } from "../taxonomy.ts";
import { hasErrorCode, isForeignKeyViolation } from "../errors.ts";
import { TASK_COLUMNS, toTaskRecord, type RawTask, type TaskRecord } from "./records.ts";
import { insertTask } from "./enqueue.ts";

export interface BulkRefreshInput {
  /** The agents, in the order asked (duplicates count once); or every agent, oldest first, up to newTaskIds.length. */
  agents: { ids: readonly string[] } | "all";
  /** One fresh id per agent that may need a new task (at least as many as agents). */
  newTaskIds: readonly string[];
  priority: Priority;
  webhookUrl: string | null;
  timeoutMs: number;
  maxAttempts: number;
}

export interface BulkRefreshOutcome {
  /** One per known agent, in the order asked: its new task, or its pending refresh (created false). */
  tasks: { task: TaskRecord; created: boolean }[];
  /** Requested ids that name no agent, in the order asked (PostgreSQL's lowercase form). */
  unknownAgentIds: string[];
}

/** How often the statement is run again after it wrote nothing because of a concurrent change. */
const RETRIES = 3;

/** Deadlock (40P01) or serialization failure (40001): the statement was rolled back, nothing written. */
const isConcurrencyFailure = (error: unknown) => hasErrorCode(error, (code) => code === "40P01" || code === "40001");

/**
 * Each agent gets what POST /agents/{id}/coverage/refresh would give it: its oldest pending
 * task if it has one (whatever made it), else a new task holding its deduplication slot
 * (`dedupe = true`). An agent whose slot a concurrent request took between this statement's
 * snapshot and its insert (`on conflict ... do nothing` wrote no row) is settled by the single
 * path's statement (insertTask), which joins that task: rare, and only for those agents.
 * An agent deleted while the statement ran fails it with a foreign key violation, having
 * written nothing: it is run again, and that agent is then unknown. A deadlock with a
 * concurrent batch of single refreshes (they insert in arrival order) also wrote nothing: it
 * is run again too.
 */
export async function refreshAgents(db: DbOrTx, input: BulkRefreshInput): Promise<BulkRefreshOutcome> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await refreshOnce(db, input);
    } catch (error) {
      if (!(isForeignKeyViolation(error) || isConcurrencyFailure(error)) || attempt >= RETRIES) throw error;
    }
  }
}

async function refreshOnce(db: DbOrTx, input: BulkRefreshInput): Promise<BulkRefreshOutcome> {
  const requested: SQL =
    input.agents === "all"
      ? sql`select agent_id, row_number() over (order by created_at, agent_id) as ord
          from (select agent_id, created_at from agents order by created_at, agent_id limit ${input.newTaskIds.length}::int) a`
      : sql`select distinct on (id) id as agent_id, ord
          from unnest(${toPgArray([...input.agents.ids])}::uuid[]) with ordinality as u(id, ord)
          order by id, ord`;
  const rows = await queryPrepared<RawTask & { requested_id: string; known: boolean; source: "inserted" | "existing" | null }>(
    db,
    sql`
    with requested as (${requested}),
    known as (
      select r.agent_id, r.ord from requested r where exists (select 1 from agents a where a.agent_id = r.agent_id)
    ), existing as (
      select distinct on (agent_id) ${TASK_COLUMNS} from background_tasks
      where agent_id in (select agent_id from known) and status = 'pending'
      order by agent_id, created_at, task_id
    ), fresh as (
      select k.agent_id, row_number() over (order by k.ord) as n from known k
      where not exists (select 1 from existing e where e.agent_id = k.agent_id)
    ), inserted as (
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe)
      select (${toPgArray([...input.newTaskIds])}::text[])[f.n], f.agent_id, ${input.priority}::text, ${input.webhookUrl}::text,
        ${input.timeoutMs}::int, ${input.maxAttempts}::int, true
      from fresh f
      -- In agent_id order, whatever the order asked: two bulk refreshes of the same agents take
      -- their deduplication slots in the same order, so they cannot deadlock on each other.
      order by f.agent_id
      on conflict (agent_id) where status = 'pending' and dedupe do nothing
      returning ${TASK_COLUMNS}
    ), results as (
      select 'inserted' as source, * from inserted
      union all
      select 'existing' as source, * from existing
    )
    select r.agent_id as requested_id, exists (select 1 from known k where k.agent_id = r.agent_id) as known, res.*
    from requested r left join results res on res.agent_id = r.agent_id
    order by r.ord`,
  );
  const tasks: BulkRefreshOutcome["tasks"] = [];
  const unknownAgentIds: string[] = [];
  const unsettled: { index: number; agentId: string }[] = [];
  for (const { requested_id, known, source, ...row } of rows) {
    if (!known) unknownAgentIds.push(requested_id);
    else if (source === null) {
      // Its slot was taken by a concurrent request after this statement's snapshot.
      unsettled.push({ index: tasks.length, agentId: requested_id });
      tasks.push(undefined as never);
    } else tasks.push({ task: toTaskRecord(row), created: source === "inserted" });
  }
  // Each unsettled agent's rank id was not written (its insert did nothing): those ids are free.
  const written = new Set(tasks.filter(Boolean).map((t) => t.task.task_id));
  const free = input.newTaskIds.filter((id) => !written.has(id));
  const gone = new Set<number>();
  for (const [i, { index, agentId }] of unsettled.entries()) {
    try {
      tasks[index] = await insertTask(db, {
        taskId: free[i]!,
        agentId,
        priority: input.priority,
        webhookUrl: input.webhookUrl,
        timeoutMs: input.timeoutMs,
        maxAttempts: input.maxAttempts,
        dedupe: true,
      });
    } catch (error) {
      // Deleted since the statement ran: unknown now.
      if (!isForeignKeyViolation(error)) throw error;
      gone.add(index);
      unknownAgentIds.push(agentId);
    }
  }
  return { tasks: gone.size ? tasks.filter((_, i) => !gone.has(i)) : tasks, unknownAgentIds };
}

/** How many agents exist, counting no further than `limit` (reads at most `limit` index entries). */
export async function countAgentsUpTo(db: DbOrTx, limit: number): Promise<number> {
  const [row] = await queryPrepared<{ n: number }>(db, sql`select count(*)::int as n from (select 1 from agents limit ${limit}::int) a`);
  return row!.n;
}
