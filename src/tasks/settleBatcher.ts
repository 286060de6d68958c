/**
 * Group commit of task endings (src/tasks/groupCommit.ts): completions, failures, timeouts
 * and retries that are ready while a settle statement is in flight are written together by
 * the next one, with their history rows, the agents' figures and the webhook outbox rows
 * (src/db/tasks/settle.ts). Each caller learns what its own row became once the statement
 * has committed: durable before acknowledged.
 */
import type { Db } from "../db/client.ts";
import { settleTasks, type Settled, type Settling } from "../db/tasks/settle.ts";
import { hasErrorCode } from "../db/errors.ts";
import { GroupCommitter } from "./groupCommit.ts";

/** An actor settles at most its own slots at once; this only bounds a pile-up. */
export const MAX_SETTLE_BATCH = 512;

/** Deadlock and serialization failures: nothing was written, the same batch may simply run again. */
const RETRYABLE = new Set(["40P01", "40001"]);

export class SettleBatcher {
  private readonly committer: GroupCommitter<Settling, Settled | null>;

  /** `db` is read per write: an actor replaces its pool after a lost connection. */
  constructor(private readonly db: () => Db) {
    this.committer = new GroupCommitter((batch) => this.write(batch), MAX_SETTLE_BATCH);
  }

  get stats() {
    return this.committer.stats;
  }

  /** What was written for this lease, or null when nothing was (lease lost, or cancelled). */
  settle(item: Settling): Promise<Settled | null> {
    return this.committer.submit(item);
  }

  private async write(batch: Settling[]): Promise<Promise<Settled | null>[]> {
    let written: Map<string, Settled>;
    try {
      written = await settleTasks(this.db(), batch);
    } catch (error) {
      if (!hasErrorCode(error, (code) => RETRYABLE.has(code))) throw error;
      written = await settleTasks(this.db(), batch);
    }
    return batch.map((s) => Promise.resolve(written.get(s.leaseToken) ?? null));
  }
}
