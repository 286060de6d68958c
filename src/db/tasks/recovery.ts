/**
 * The reconciler's statements: tasks whose owner died (lease lapsed), and the pending tasks Redis
 * may have lost.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { toIso } from "../values.ts";
import type { RawTask, Redispatch } from "./records.ts";
import { endingAssignments } from "./settle.ts";
import { recordRequeuedAttempts, requeuedAttemptColumns } from "./attempts.ts";
import { toPgArray } from "../taxonomy.ts";
import { endingFor } from "../../core/settle.ts";
import { fetchedStatusIs } from "./byId.ts";

/**
 * Running tasks whose lease has lapsed (owner gone) end as the settle module says of a lapsed
 * lease (src/core/settle.ts: retried, or failed once out of attempts), written with the same
 * assignments as every other ending (src/db/tasks/settle.ts): at most `limit` of them, the
 * longest expired first, in one statement that holds its row locks only until it commits. Every
 * row it touches leaves `status = 'running'`, so calling it again until it returns fewer than
 * `limit` pages through them all (the reconciler does). Rows another reconciler has locked are
 * skipped, not waited for: concurrent callers split the work. Each lapsed attempt of a task that
 * goes back to pending is kept in task_attempts by the same statement (src/db/tasks/attempts.ts).
 */
export async function requeueExpiredLeases(db: DbOrTx, limit = 500): Promise<Redispatch[]> {
  const ending = endingFor({ how: "lease_expired" });
  if (ending?.kind !== "retry") throw new Error("a lapsed lease is expected to be retried");
  const rows = await db.execute<RawTask>(sql`
    with ended as (
      update background_tasks t set ${endingAssignments()}
      from (select task_id, 'retry'::text as kind, ${ending.refund ? 1 : 0}::int as refund, ${ending.error}::text as error,
                   null::jsonb as result
            from background_tasks
            where status = 'running' and lease_expires_at < now()
            order by lease_expires_at limit ${limit} for update skip locked) i
      where t.task_id = i.task_id
      returning t.task_id, t.agent_id, t.priority, t.created_at, t.status, t.attempt, t.error, ${requeuedAttemptColumns}
    ),
    -- The lapsed attempt of each task that went back to pending, for its timeline.
    attempts as (${recordRequeuedAttempts})
    select task_id, agent_id, priority, created_at, status, attempt from ended`);
  return rows.map((r) => ({ ...(r as unknown as Redispatch), created_at: toIso(r.created_at as string) }));
}

/** Position of a pending task in the reconciler's walk: (created_at, task_id), created_at as PostgreSQL's text (microseconds). */
export interface PendingCursor {
  createdAt: string;
  taskId: string;
}

export interface StalePendingPage {
  /** `limited`: the agent has max_concurrent_refreshes, so the task may be waiting in its park. */
  tasks: (Redispatch & { limited: boolean })[];
  /** Where the next page starts; null when this page came back short (there is no more). */
  next: PendingCursor | null;
}

/**
 * Pending tasks not touched for `olderThanMs` (candidates for re-dispatch if Redis lost them),
 * oldest first, one page of at most `limit` after the cursor `after` (from the start without it).
 * Keyset paging over the partial index (created_at, task_id) where pending: each page is a range
 * read of that index, whatever the backlog; the page's snapshot is its own, so a walk holds
 * nothing between pages. A task that turns pending behind the cursor during a walk was just
 * touched (enqueued or requeued), so it is not stale and the next walk sees it.
 */
export async function stalePendingTasks(
  db: DbOrTx,
  olderThanMs: number,
  page: { after?: PendingCursor; limit?: number } = {},
): Promise<StalePendingPage> {
  const limit = page.limit ?? 1000;
  const after = page.after ? sql`and (t.created_at, t.task_id) > (${page.after.createdAt}::timestamptz, ${page.after.taskId})` : sql``;
  const rows = await db.execute<RawTask>(sql`
    select t.task_id, t.agent_id, t.priority, t.created_at, t.status, t.attempt, t.created_at::text as cursor_created_at,
           a.max_concurrent_refreshes is not null as limited
    from background_tasks t join agents a on a.agent_id = t.agent_id
    where t.status = 'pending' and t.updated_at < now() - ${olderThanMs} * interval '1 millisecond' ${after}
    order by t.created_at, t.task_id limit ${limit}`);
  const last = rows[rows.length - 1];
  return {
    tasks: rows.map(({ cursor_created_at: _, ...r }) => ({
      ...(r as unknown as Redispatch & { limited: boolean }),
      created_at: toIso(r.created_at as string),
    })),
    next: last && rows.length >= limit ? { createdAt: last.cursor_created_at as string, taskId: last.task_id as string } : null,
  };
}

/**
 * Which of `taskIds` are still pending. The reconciler asks it after Redis said their ids are in
 * no queue: an actor may have popped one between the page's read and that check, and claimed it
 * since (it is running now, and must not be dispatched again or counted as recovered).
 */
export async function stillPending(db: DbOrTx, taskIds: readonly string[]): Promise<Set<string>> {
  if (taskIds.length === 0) return new Set();
  const rows = await db.execute<{ task_id: string }>(sql`
    select t.task_id from background_tasks t where t.task_id = any(${toPgArray(taskIds)}::text[]) and ${fetchedStatusIs("t", "pending")}`);
  return new Set(rows.map((r) => r.task_id));
}

/**
 * Agents with max_concurrent_refreshes, pending tasks, and room: fewer running tasks than their
 * limit. Each ending of a limited agent's task releases one parked task at once (workers/actor.ts);
 * the reconciler asks this to release the rest: places freed by endings nobody announced (a thread
 * that died, a lapsed lease, a limit raised), and releases lost to a Redis failure.
 */
export async function limitedAgentsWithRoom(db: DbOrTx): Promise<{ agent_id: string; room: number }[]> {
  const rows = await db.execute<{ agent_id: string; room: number }>(sql`
    select agent_id, room from (
      select a.agent_id, a.max_concurrent_refreshes
               - (select count(*) from background_tasks r where r.agent_id = a.agent_id and r.status = 'running')::int as room
      from agents a
      where a.max_concurrent_refreshes is not null
        and exists (select 1 from background_tasks p where p.agent_id = a.agent_id and p.status = 'pending')) x
    where room > 0`);
  return rows.map((r) => ({ agent_id: r.agent_id, room: Number(r.room) }));
}
