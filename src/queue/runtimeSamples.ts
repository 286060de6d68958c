/**
 * Recent run times (ms), newest first and capped, for the API's completion
 * estimates. Samples only feed estimates, so they are written in the
 * background, many per round trip: a sample waits up to `flushEveryMs` for the
 * others that arrive meanwhile, and they all go out in one pipeline. A lost
 * sample is fine.
 *
 * Why a window and not "write at once, pile up while in flight": a worker
 * thread's socket writes are its largest single cost (about a fifth of its CPU
 * in the engine benchmark's profile), and an actor finishing batch after batch
 * wrote one pipeline per batch. A window of a quarter second caps that at four
 * writes a second per thread, while an estimate still sees a run time well
 * before a real refresh (seconds) could be estimated again.
 */
import type { RedisClient } from "./redisClient.ts";
import type { QueueKeys } from "./keys.ts";

/** How many samples Redis keeps. */
export const RUNTIME_SAMPLES = 100;

/** How long the first sample of a write waits for others. */
export const RUNTIME_FLUSH_MS = 250;

export class RuntimeSamples {
  private pending: number[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private writing: Promise<void> | null = null;
  /** Pipelines sent, for tests. */
  writes = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
    private readonly flushEveryMs = RUNTIME_FLUSH_MS,
  ) {}

  add(ms: number): void {
    this.pending.push(Math.round(ms));
    // Only the newest are kept in Redis, so only the newest need keeping here.
    if (this.pending.length > RUNTIME_SAMPLES) this.pending.splice(0, this.pending.length - RUNTIME_SAMPLES);
    this.schedule();
  }

  /** Resolves once the samples added so far are written (or dropped). */
  async settled(): Promise<void> {
    for (;;) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
        this.write();
      }
      if (!this.writing) return;
      await this.writing;
    }
  }

  private schedule(): void {
    if (this.timer || this.writing || this.pending.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.write();
    }, this.flushEveryMs);
    // A pending sample never keeps a thread alive.
    this.timer.unref?.();
  }

  private write(): void {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    this.writes++;
    this.writing = this.redis
      .pipeline()
      .lpush(this.keys.runtimes, ...batch)
      .ltrim(this.keys.runtimes, 0, RUNTIME_SAMPLES - 1)
      .exec()
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        this.writing = null;
        // Samples that arrived during the write wait for the next window.
        this.schedule();
      });
  }
}
