/**
 * A task's earlier attempts (task_attempts, src/db/schema.ts): written by the statements that send
 * a running task back to pending (the settle statement for a retry ending, the reconciler's
 * lease-expiry requeue), inside those statements, and read with the task for GET /tasks/{id}.
 *
 * Nothing here runs for an attempt that ends the task: that one stays in background_tasks'
 * started_at / completed_at. The engine's hot path (a task that completes first time) writes no
 * row and reads nothing more (the sub-select below sits in a CASE branch it never takes).
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { toIso, toIsoOrNull } from "../values.ts";
import { TASK_COLUMNS, toTaskRecord, type RawTask, type TaskRecord } from "./records.ts";
import { queryPrepared } from "../prepared.ts";

/**
 * Extra RETURNING columns of an UPDATE of `background_tasks t` from input `i` (with its `refund`)
 * that wrote an ending: the refund, and the ended attempt's start for a row that went back to
 * pending. The assignments have cleared started_at by then, and RETURNING sees only new values, so
 * it is read by a sub-select, which sees the row as the statement's snapshot does (before this
 * update). Only a row that went back to pending evaluates it.
 */
export const requeuedAttemptColumns = sql.raw(
  `i.refund as refund,
   case when t.status = 'pending' then (select o.started_at from background_tasks o where o.task_id = t.task_id) end as attempt_started_at`,
);

/**
 * The data-modifying CTE body that records, for each row of the CTE `ended` (the UPDATE above:
 * task_id, status, attempt, error, refund, attempt_started_at) that went back to pending, the
 * attempt that just ended. In the same statement as the update, so it commits with it and is
 * fenced by the same lease check. The attempt's number is the one it ran as: the counter less a
 * refund is what the row holds now. Its outcome is the retry's reason (the row's error).
 */
export const recordRequeuedAttempts = sql.raw(`
      insert into task_attempts (task_id, attempt, started_at, ended_at, outcome, refunded)
      select task_id, attempt + refund, attempt_started_at, now(), coalesce(error, 'went back to the queue'), refund > 0
      from ended where status = 'pending'
      returning 1`);

/** One earlier attempt of a task, as GET /tasks/{id} shows it. */
export interface TaskAttempt {
  attempt: number;
  started_at: string | null;
  ended_at: string;
  /** Why it ended without ending the task (lease expired, worker thread crashed, handed back...). */
  outcome: string;
  /** Given back: not counted against max_attempts (a shutdown or a sibling's thread interrupted it). */
  refunded: boolean;
}

export type TaskWithAttempts = TaskRecord & { attempts: TaskAttempt[] };

type RawAttempt = { attempt: number; started_at: string | null; ended_at: string; outcome: string; refunded: boolean };

/**
 * The task and its earlier attempts, oldest first, in one statement: the attempts are one range
 * read of task_attempts_task_id_idx (none for most tasks).
 */
export async function getTaskWithAttempts(db: DbOrTx, taskId: string): Promise<TaskWithAttempts | null> {
  // Prepared: GET /tasks/{id} is what a client polls.
  const rows = await queryPrepared<RawTask>(db, sql`
    select ${TASK_COLUMNS},
      coalesce((select json_agg(json_build_object('attempt', a.attempt, 'started_at', a.started_at, 'ended_at', a.ended_at,
                                                  'outcome', a.outcome, 'refunded', a.refunded) order by a.task_attempt_id)
                from task_attempts a where a.task_id = t.task_id), '[]'::json) as attempts
    from background_tasks t where t.task_id = ${taskId}`);
  const row = rows[0];
  if (!row) return null;
  const { attempts, ...task } = row as RawTask & { attempts: RawAttempt[] | string };
  const list = (typeof attempts === "string" ? JSON.parse(attempts) : attempts) as RawAttempt[];
  return {
    ...toTaskRecord(task),
    attempts: list.map((a) => ({
      attempt: a.attempt,
      started_at: toIsoOrNull(a.started_at),
      ended_at: toIso(a.ended_at),
      outcome: a.outcome,
      refunded: a.refunded,
    })),
  };
}
