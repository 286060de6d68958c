/**
 * The statement live-event streams use to re-read what they watch (src/api/events/hub.ts):
 * the state of many tasks by primary key, in one query.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import { queryPrepared } from "../prepared.ts";
import { toIso } from "../values.ts";
import { toPgArray } from "../taxonomy.ts";
import type { TaskStatus } from "../../core/tasks.ts";

export interface WatchedTask {
  task_id: string;
  agent_id: string;
  status: TaskStatus;
  progress_percentage: number;
  attempt: number;
  updated_at: string;
}

/** The current state of each task of `taskIds` that exists; a missing one was deleted (or never existed). */
export async function watchedTasks(db: DbOrTx, taskIds: readonly string[]): Promise<Map<string, WatchedTask>> {
  if (taskIds.length === 0) return new Map();
  const rows = await queryPrepared<Record<string, unknown>>(
    db,
    sql`select task_id, agent_id, status, progress_percentage, attempt, updated_at from background_tasks
        where task_id = any(${toPgArray(taskIds)}::text[])`,
  );
  return new Map(
    rows.map((r) => [
      r.task_id as string,
      {
        task_id: r.task_id as string,
        agent_id: r.agent_id as string,
        status: r.status as TaskStatus,
        progress_percentage: r.progress_percentage as number,
        attempt: r.attempt as number,
        updated_at: toIso(r.updated_at as string),
      },
    ]),
  );
}
