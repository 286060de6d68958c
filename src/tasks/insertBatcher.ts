/**
 * Group commit of enqueues (src/tasks/groupCommit.ts). Each new task must be durable
 * (committed) before its 202, and a commit per request makes PostgreSQL's per-statement and
 * per-commit work the cost of every enqueue: requests that arrive while an INSERT is in
 * flight are written together by the next one.
 */
import type { Db } from "../db/client.ts";
import { insertTask, insertTasks, type InsertOutcome, type NewTask } from "../db/tasks/enqueue.ts";
import { isTransientDbError } from "../db/errors.ts";
import { GroupCommitter } from "./groupCommit.ts";

/** More than this many waiting requests are written by successive statements. */
export const MAX_BATCH = 256;

export class TaskInsertBatcher {
  private readonly committer: GroupCommitter<NewTask, InsertOutcome>;

  constructor(private readonly db: Db) {
    this.committer = new GroupCommitter((batch) => this.write(batch), MAX_BATCH);
  }

  /** Statements issued and tasks written, for tests and benchmarks. */
  get stats() {
    return { statements: this.committer.stats.writes, tasks: this.committer.stats.items };
  }

  insert(task: NewTask): Promise<InsertOutcome> {
    return this.committer.submit(task);
  }

  private async write(batch: NewTask[]): Promise<Promise<InsertOutcome>[]> {
    if (batch.length === 1) return [insertTask(this.db, batch[0]!)];
    try {
      return await insertTasks(this.db, batch);
    } catch (error) {
      // A lost connection fails every request of the batch (whether the commit happened is
      // unknown; a task that was written is pending and gets dispatched by the reconciler).
      // Otherwise the statement wrote nothing because one bad task (an unknown agent)
      // failed all of it: write them one by one, so that only the bad one's request fails.
      if (isTransientDbError(error)) throw error;
      return batch.map((task) => insertTask(this.db, task));
    }
  }
}
