/**
 * Statements on agent_schedules: the API's create-or-replace, read and delete, and the
 * scheduler's two statements (lock the due schedules; advance them by compare-and-set and
 * enqueue their tasks), which run in one transaction (src/schedules/scheduler.ts).
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";
import type { Priority } from "../core/tasks.ts";
import { toIso, toIsoOrNull } from "./values.ts";

export interface ScheduleView {
  schedule_id: string;
  agent_id: string;
  cron: string | null;
  every_seconds: number | null;
  timezone: string;
  priority: Priority;
  webhook_url: string | null;
  enabled: boolean;
  /** The next slot to fire; null while disabled (or a cron expression with no later match). */
  next_run_at: string | null;
  /** When a supervisor last fired a slot of this schedule. */
  last_run_at: string | null;
  created_at: string;
  updated_at: string;
}

type RawSchedule = Record<string, unknown>;

const SCHEDULE_COLUMNS = sql.raw(`schedule_id, agent_id, cron, every_seconds, timezone, priority, webhook_url, enabled,
  next_run_at, last_run_at, created_at, updated_at`);

const toScheduleView = (row: RawSchedule): ScheduleView => ({
  schedule_id: row.schedule_id as string,
  agent_id: row.agent_id as string,
  cron: (row.cron as string | null) ?? null,
  every_seconds: row.every_seconds === null ? null : Number(row.every_seconds),
  timezone: row.timezone as string,
  priority: row.priority as Priority,
  webhook_url: (row.webhook_url as string | null) ?? null,
  enabled: row.enabled as boolean,
  next_run_at: toIsoOrNull(row.next_run_at as string | null),
  last_run_at: toIsoOrNull(row.last_run_at as string | null),
  created_at: toIso(row.created_at as string),
  updated_at: toIso(row.updated_at as string),
});

export interface ScheduleWrite {
  cron: string | null;
  every_seconds: number | null;
  timezone: string;
  priority: Priority;
  webhook_url: string | null;
  enabled: boolean;
  /** The first slot, computed by the caller from now (null when disabled). */
  next_run_at: Date | null;
}

/**
 * Creates the agent's schedule or replaces it (one per agent; the schedule_id and created_at
 * of an existing one are kept). A replacement keeps the pending next_run_at when the timing
 * (cron, every_seconds, and for cron the time zone) is unchanged and the schedule stays
 * enabled, so changing only the priority or webhook does not move the next run. Throws a
 * foreign-key violation for an unknown agent.
 */
export async function upsertSchedule(db: DbOrTx, agentId: string, input: ScheduleWrite): Promise<{ schedule: ScheduleView; created: boolean }> {
  const [row] = await db.execute<RawSchedule & { created: boolean }>(sql`
    insert into agent_schedules (agent_id, cron, every_seconds, timezone, priority, webhook_url, enabled, next_run_at)
    values (${agentId}, ${input.cron}, ${input.every_seconds}, ${input.timezone}, ${input.priority}, ${input.webhook_url},
            ${input.enabled}, ${input.next_run_at?.toISOString() ?? null}::timestamptz)
    on conflict (agent_id) do update set
      cron = excluded.cron,
      every_seconds = excluded.every_seconds,
      timezone = excluded.timezone,
      priority = excluded.priority,
      webhook_url = excluded.webhook_url,
      enabled = excluded.enabled,
      next_run_at = case
        when excluded.enabled and agent_schedules.enabled and agent_schedules.next_run_at is not null
          and agent_schedules.cron is not distinct from excluded.cron
          and agent_schedules.every_seconds is not distinct from excluded.every_seconds
          and (excluded.cron is null or agent_schedules.timezone = excluded.timezone)
        then agent_schedules.next_run_at
        else excluded.next_run_at end,
      updated_at = now()
    returning ${SCHEDULE_COLUMNS}, (xmax = 0) as created`);
  const { created, ...schedule } = row!;
  return { schedule: toScheduleView(schedule), created: Boolean(created) };
}

export async function getSchedule(db: DbOrTx, agentId: string): Promise<ScheduleView | null> {
  const [row] = await db.execute<RawSchedule>(sql`select ${SCHEDULE_COLUMNS} from agent_schedules where agent_id = ${agentId}`);
  return row ? toScheduleView(row) : null;
}

export async function deleteSchedule(db: DbOrTx, agentId: string): Promise<boolean> {
  const rows = await db.execute(sql`delete from agent_schedules where agent_id = ${agentId} returning schedule_id`);
  return rows.length > 0;
}

/** A schedule whose slot is due, locked by the scheduler's transaction. */
export interface DueSchedule {
  schedule_id: string;
  agent_id: string;
  cron: string | null;
  every_seconds: number | null;
  timezone: string;
  /** The slot being fired: next_run_at exactly as stored (text, so the compare-and-set matches to the microsecond). */
  slot: string;
  /** The transaction's now(): the instant the next slot is computed from, and the new task's created_at. */
  now: string;
}

/**
 * Locks up to `limit` enabled schedules whose next_run_at has come, oldest slot first.
 * SKIP LOCKED: schedules another supervisor is firing (or the API is replacing) are left to
 * it, so supervisors never wait on each other.
 */
export async function lockDueSchedules(tx: DbOrTx, limit: number): Promise<DueSchedule[]> {
  const rows = await tx.execute<Record<string, unknown>>(sql`
    select schedule_id, agent_id, cron, every_seconds, timezone, next_run_at::text as slot, now()::text as now
    from agent_schedules
    where enabled and next_run_at <= now()
    order by next_run_at
    limit ${limit}
    for update skip locked`);
  return rows.map((r) => ({
    schedule_id: r.schedule_id as string,
    agent_id: r.agent_id as string,
    cron: (r.cron as string | null) ?? null,
    every_seconds: r.every_seconds === null ? null : Number(r.every_seconds),
    timezone: r.timezone as string,
    slot: r.slot as string,
    now: r.now as string,
  }));
}

export interface SlotFiring {
  schedule_id: string;
  /** The slot being fired, as lockDueSchedules read it. */
  slot: string;
  /** The following slot (null: none, the schedule goes quiet until it is replaced). */
  next: Date | null;
  /** The id the new task gets if one is created. */
  task_id: string;
}

export interface FiredSlot {
  schedule_id: string;
  agent_id: string;
  slot: string;
  next_run_at: string | null;
  priority: Priority;
  /** The task this slot created, or the agent's pending refresh it joined (null: a concurrent request's, not yet visible). */
  task_id: string | null;
  created: boolean;
  /** created_at of the new task (null when the slot joined a pending one). */
  created_at: string | null;
}

/**
 * Fires slots in ONE statement: advances each schedule's next_run_at by compare-and-set
 * (`next_run_at = <the slot read>`: a schedule that moved meanwhile is skipped) and inserts
 * the tasks of the slots it advanced, with their schedule_id. Because both are one statement
 * of the caller's transaction, they commit together or not at all: a slot is never advanced
 * without its task, nor enqueued twice.
 *
 * Deduplication is the API's unforced rule: an agent that already has a pending refresh
 * (whatever made it) gets no second one; the slot joins it. The new task holds the agent's
 * deduplication slot, so later unforced requests join it in turn.
 */
export async function fireSlots(
  tx: DbOrTx,
  slots: readonly SlotFiring[],
  task: { timeoutMs: number; maxAttempts: number },
): Promise<FiredSlot[]> {
  if (slots.length === 0) return [];
  const input = JSON.stringify(slots.map((s) => ({ schedule_id: s.schedule_id, slot: s.slot, next: s.next?.toISOString() ?? null, task_id: s.task_id })));
  const rows = await tx.execute<Record<string, unknown>>(sql`
    with input as (
      select * from jsonb_to_recordset(${input}::jsonb) as i(schedule_id uuid, slot text, next timestamptz, task_id text)
    ), advanced as (
      update agent_schedules s set next_run_at = i.next, last_run_at = now()
      from input i
      where s.schedule_id = i.schedule_id and s.next_run_at = i.slot::timestamptz and s.enabled
      returning s.schedule_id, s.agent_id, s.priority, s.webhook_url, s.next_run_at, i.slot, i.task_id
    ), existing as (
      select distinct on (t.agent_id) t.agent_id, t.task_id from background_tasks t
      where t.agent_id in (select agent_id from advanced) and t.status = 'pending'
      order by t.agent_id, t.created_at, t.task_id
    ), inserted as (
      insert into background_tasks (task_id, agent_id, priority, webhook_url, timeout_ms, max_attempts, dedupe, schedule_id)
      select a.task_id, a.agent_id, a.priority, a.webhook_url, ${task.timeoutMs}::int, ${task.maxAttempts}::int, true, a.schedule_id
      from advanced a
      where not exists (select 1 from existing e where e.agent_id = a.agent_id)
      on conflict (agent_id) where status = 'pending' and dedupe do nothing
      returning task_id, created_at
    )
    select a.schedule_id, a.agent_id, a.slot, a.next_run_at, a.priority,
      coalesce(i.task_id, e.task_id) as task_id, i.task_id is not null as created, i.created_at
    from advanced a
    left join inserted i on i.task_id = a.task_id
    left join existing e on e.agent_id = a.agent_id`);
  return rows.map((r) => ({
    schedule_id: r.schedule_id as string,
    agent_id: r.agent_id as string,
    slot: r.slot as string,
    next_run_at: toIsoOrNull(r.next_run_at as string | null),
    priority: r.priority as Priority,
    task_id: (r.task_id as string | null) ?? null,
    created: Boolean(r.created),
    created_at: toIsoOrNull(r.created_at as string | null),
  }));
}

export async function agentExists(db: DbOrTx, agentId: string): Promise<boolean> {
  const rows = await db.execute(sql`select 1 from agents where agent_id = ${agentId}`);
  return rows.length > 0;
}
