/**
 * The status test of a statement that fetches tasks by primary key (`task_id = any(...)`).
 *
 * Written plainly (`t.status = 'pending'`) it lets the planner prove the partial indexes
 * `... where status = 'pending'` / `where status = 'running'` apply, and, since their
 * statistics rarely know how many rows they hold, it intersected the primary-key lookup with a
 * full read of the partial index: during a burn-down of 20,000 pending tasks every claim of 32
 * read all 20,000 entries (1.6 of its 3.0 ms, auto_explain), and every settle read the running
 * index the same way. As an expression (`status || ''`) the test cannot be matched to an index
 * predicate: the rows come by primary key and the status is checked on each one.
 */
import { sql, type SQL } from "drizzle-orm";
import type { TaskStatus } from "../../core/tasks.ts";

export function fetchedStatusIs(alias: string, status: TaskStatus): SQL {
  return sql.raw(`(${alias}.status || '') = '${status}'`);
}
