/**
 * Counts the Redis round trips that dispatched tasks: the pipelines (ioredis's, or the ones its
 * auto-pipelining makes) that carried a ZADD. Live task events go out in pipelines of their own,
 * which a plain count of `pipeline()` calls would include.
 */
import { spyOn } from "bun:test";
import type { RedisClient } from "../../src/queue/redisClient.ts";

type QueuedPipeline = { _queue?: { name: string }[] };

export async function countDispatchPipelines<T>(redis: RedisClient, work: () => Promise<T>): Promise<{ result: T; pipelines: number }> {
  const spy = spyOn(redis, "pipeline");
  try {
    const result = await work();
    // ioredis keeps a pipeline's commands in `_queue` (not public API; a test-only look).
    const pipelines = spy.mock.results.filter((r) => ((r.value as QueuedPipeline)._queue ?? []).some((c) => c.name === "zadd")).length;
    return { result, pipelines };
  } finally {
    spy.mockRestore();
  }
}
