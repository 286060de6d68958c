/**
 * Group commit: items that arrive while a write is in flight are written
 * together by the next one (one statement, one commit), as PostgreSQL's own
 * group commit does for WAL flushes. An idle committer adds no wait: a lone
 * item is written on the next microtask. Under load a batch grows by itself
 * with the arrival rate; an item waits at most for the write in flight and its own.
 * No timer ever holds an item back.
 */
export interface GroupCommitStats {
  /** Writes issued and items written, for tests and benchmarks. */
  writes: number;
  items: number;
}

/** Writes a batch; returns one outcome per item, in order (each settles on its own). */
export type BatchWriter<I, O> = (batch: I[]) => Promise<Promise<O>[]>;

interface Waiting<I, O> {
  item: I;
  resolve: (outcome: O) => void;
  reject: (error: unknown) => void;
}

export class GroupCommitter<I, O> {
  private waiting: Waiting<I, O>[] = [];
  private writing = false;
  readonly stats: GroupCommitStats = { writes: 0, items: 0 };

  constructor(
    private readonly write: BatchWriter<I, O>,
    /** More waiting items than this are written by successive statements. */
    private readonly maxBatch: number,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.writing) return;
      this.writing = true;
      queueMicrotask(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.stats.writes++;
      this.stats.items += batch.length;
      let outcomes: Promise<O>[];
      try {
        outcomes = await this.write(batch.map((w) => w.item));
      } catch (error) {
        outcomes = batch.map(() => Promise.reject(error));
      }
      batch.forEach((w, i) => outcomes[i]!.then(w.resolve, w.reject));
      await Promise.allSettled(outcomes);
    }
    this.writing = false;
  }
}
