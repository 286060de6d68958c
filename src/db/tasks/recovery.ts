/**
 * Statements that put a task whose owner died or gave it back where it belongs: pending again, or
 * ended when it has no attempts left; and the pending tasks Redis may have lost.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { toIso } from "../values.ts";
import type { RawTask, Redispatch } from "./records.ts";

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

/**
 * Same as requeueTask for running tasks whose lease has lapsed (owner gone): at most `limit` of
 * them, the longest expired first, in one statement that holds its row locks only until it
 * commits. Every row it touches leaves `status = 'running'`, so calling it again until it returns
 * fewer than `limit` pages through them all (the reconciler does). Rows another reconciler has
 * locked are skipped, not waited for: concurrent callers split the work.
 */
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

/** Position of a pending task in the reconciler's walk: (created_at, task_id), created_at as PostgreSQL's text (microseconds). */
export interface PendingCursor {
  createdAt: string;
  taskId: string;
}

export interface StalePendingPage {
  tasks: Redispatch[];
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
  const after = page.after ? sql`and (created_at, task_id) > (${page.after.createdAt}::timestamptz, ${page.after.taskId})` : sql``;
  const rows = await db.execute<RawTask>(sql`
    select task_id, agent_id, priority, created_at, status, attempt, created_at::text as cursor_created_at from background_tasks
    where status = 'pending' and updated_at < now() - ${olderThanMs} * interval '1 millisecond' ${after}
    order by created_at, task_id limit ${limit}`);
  const last = rows[rows.length - 1];
  return {
    tasks: rows.map(({ cursor_created_at: _, ...r }) => ({ ...(r as unknown as Redispatch), created_at: toIso(r.created_at as string) })),
    next: last && rows.length >= limit ? { createdAt: last.cursor_created_at as string, taskId: last.task_id as string } : null,
  };
}
