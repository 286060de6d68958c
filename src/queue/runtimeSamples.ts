/**
 * Recent run times (ms), newest first and capped, for the API's completion
 * estimates. Samples only feed estimates, so they are written in the
 * background, many per round trip: samples that arrive while a write is in
 * flight go out together with the next one, and a lost sample is fine.
 */
import type { RedisClient } from "./redisClient.ts";
import type { QueueKeys } from "./keys.ts";

/** How many samples Redis keeps. */
export const RUNTIME_SAMPLES = 100;

export class RuntimeSamples {
  private pending: number[] = [];
  private writing: Promise<void> | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
  ) {}

  add(ms: number): void {
    this.pending.push(Math.round(ms));
    if (!this.writing) this.writing = this.flush();
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0).slice(-RUNTIME_SAMPLES);
      await this.redis
        .pipeline()
        .lpush(this.keys.runtimes, ...batch)
        .ltrim(this.keys.runtimes, 0, RUNTIME_SAMPLES - 1)
        .exec()
        .catch(() => {});
    }
    this.writing = null;
  }

  /** Resolves once the samples added so far are written (or dropped). */
  async settled(): Promise<void> {
    while (this.writing) await this.writing;
  }
}
