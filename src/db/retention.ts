/** Retention: old terminal tasks and coverage history are deleted in batches. */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";

/**
 * Retention: deletes in batches so a large backlog never holds long locks.
 *
 * A task with a webhook delivery is kept while the delivery is pending (a retry schedule
 * spans days, longer than the default retention) and for the retention period after the
 * delivery ended (its updated_at), so a dead delivery stays listed and redeliverable that
 * long; deleting the task deletes its delivery and attempts (foreign keys, cascade).
 */
export async function deleteExpired(db: DbOrTx, taskRetentionMs: number, historyRetentionMs: number, batch = 5000) {
  let tasks = 0;
  let history = 0;
  for (;;) {
    const r = await db.execute(sql`
      delete from background_tasks where task_id in (
        select t.task_id from background_tasks t
        where t.status in ('completed', 'failed', 'cancelled', 'timeout')
          and t.completed_at < now() - ${taskRetentionMs} * interval '1 millisecond'
          and not exists (
            select 1 from webhook_outbox o where o.task_id = t.task_id
              and (o.status = 'pending' or o.updated_at >= now() - ${taskRetentionMs} * interval '1 millisecond'))
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
