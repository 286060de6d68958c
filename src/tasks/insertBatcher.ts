/**
 * Group commit of enqueues. Each new task must be durable (committed) before its 202, and a
 * commit per request makes PostgreSQL's per-statement and per-commit work the cost of every
 * enqueue. Requests that arrive while an INSERT is in flight are written together by the
 * next one: one statement, one commit, as PostgreSQL's own group commit does for WAL flushes.
 * An idle batcher adds no wait: a lone request is written on the next microtask. Under load
 * the batch grows by itself with the arrival rate; a request waits at most for the statement
 * in flight and its own.
 */
import type { Db } from "../db/client.ts";
import { insertTask, insertTasks, type InsertOutcome, type NewTask } from "../db/tasks/enqueue.ts";
import { isTransientDbError } from "../db/errors.ts";

interface Waiting {
  task: NewTask;
  resolve: (outcome: InsertOutcome) => void;
  reject: (error: unknown) => void;
}

/** More than this many waiting requests are written by successive statements. */
export const MAX_BATCH = 256;

export class TaskInsertBatcher {
  private waiting: Waiting[] = [];
  private writing = false;
  /** Statements issued and tasks written, for tests and benchmarks. */
  readonly stats = { statements: 0, tasks: 0 };

  constructor(private readonly db: Db) {}

  insert(task: NewTask): Promise<InsertOutcome> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ task, resolve, reject });
      if (this.writing) return;
      this.writing = true;
      queueMicrotask(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, MAX_BATCH);
      this.stats.statements++;
      this.stats.tasks += batch.length;
      let outcomes: Promise<InsertOutcome>[];
      if (batch.length === 1) outcomes = [insertTask(this.db, batch[0]!.task)];
      else {
        try {
          outcomes = await insertTasks(this.db, batch.map((w) => w.task));
        } catch (error) {
          // A lost connection fails every request of the batch (whether the commit happened is
          // unknown; a task that was written is pending and gets dispatched by the reconciler).
          // Otherwise the statement wrote nothing because one bad task (an unknown agent)
          // failed all of it: write them one by one, so that only the bad one's request fails.
          outcomes = isTransientDbError(error) ? batch.map(() => Promise.reject(error)) : batch.map((w) => insertTask(this.db, w.task));
        }
      }
      batch.forEach((w, i) => outcomes[i]!.then(w.resolve, w.reject));
      await Promise.allSettled(outcomes);
    }
    this.writing = false;
  }
}
