/**
 * Dispatch operations on the Redis priority queues. Each is O(log n) in the
 * queue length (sorted sets): ZADD, ZREM, ZRANK, BZPOPMIN. Redis holds only
 * ids; PostgreSQL decides whether a popped id may run (see claimTask).
 */
import type { RedisClient } from "./redisClient.ts";
import { PRIORITIES, type Priority } from "../core/tasks.ts";
import { priorityOfQueue, type QueueKeys } from "./keys.ts";
import { Parking } from "./parking.ts";

export interface Dispatchable {
  taskId: string;
  priority: Priority;
  /** Enqueue time in ms: FIFO order within a priority (ties by id, and ids are time-ordered). */
  score: number;
}

export class Dispatcher {
  /** The agents' parks: tasks deferred by max_concurrent_refreshes (src/queue/parking.ts). */
  readonly parking: Parking;

  constructor(
    private readonly redis: RedisClient,
    readonly keys: QueueKeys,
  ) {
    this.parking = new Parking(redis, keys);
  }

  /** Adds ids to their queues in one round trip. NX: a re-dispatch keeps the original place. */
  async dispatch(tasks: readonly Dispatchable[]): Promise<void> {
    if (tasks.length === 0) return;
    const pipeline = this.redis.pipeline();
    this.append(pipeline, tasks);
    await execOrThrow(pipeline);
  }

  /** The ZADDs of `dispatch`, added to a pipeline of the caller's (src/queue/placement.ts): one command per task. */
  append(pipeline: ReturnType<RedisClient["pipeline"]>, tasks: readonly Dispatchable[]): void {
    for (const t of tasks) pipeline.zadd(this.keys.queue(t.priority), "NX", t.score, t.taskId);
  }

  async remove(taskId: string, priority: Priority): Promise<boolean> {
    return (await this.redis.zrem(this.keys.queue(priority), taskId)) > 0;
  }

  /** 1 = next to run, counted across priorities; null when the id is not queued. */
  async position(taskId: string, priority: Priority): Promise<number | null> {
    const higher = PRIORITIES.slice(0, PRIORITIES.indexOf(priority));
    const pipeline = this.redis.pipeline();
    for (const p of higher) pipeline.zcard(this.keys.queue(p));
    pipeline.zrank(this.keys.queue(priority), taskId);
    const results = await execOrThrow(pipeline);
    const rank = results[results.length - 1] as number | null;
    if (rank === null) return null;
    const ahead = (results.slice(0, -1) as number[]).reduce((a, b) => a + b, 0);
    return ahead + rank + 1;
  }

  async depths(): Promise<Record<Priority, number>> {
    const pipeline = this.redis.pipeline();
    for (const p of PRIORITIES) pipeline.zcard(this.keys.queue(p));
    const [high, medium, low] = (await execOrThrow(pipeline)) as number[];
    return { high: high!, medium: medium!, low: low! };
  }

  /** True when the id is in some queue (used by the reconciler in batches). */
  async queuedAmong(tasks: readonly { taskId: string; priority: Priority }[]): Promise<boolean[]> {
    if (tasks.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const t of tasks) pipeline.zscore(this.keys.queue(t.priority), t.taskId);
    return ((await execOrThrow(pipeline)) as (string | null)[]).map((s) => s !== null);
  }
}

/**
 * Blocks until a task id is available (highest priority first, oldest first),
 * or `timeoutSeconds` pass. Needs a connection of its own: a blocked
 * connection serves nobody else.
 */
export async function popNext(
  blocking: RedisClient,
  keys: QueueKeys,
  timeoutSeconds: number,
): Promise<{ taskId: string; priority: Priority } | null> {
  const popped = await blocking.bzpopmin(...keys.queues, timeoutSeconds);
  if (!popped) return null;
  const [key, taskId] = popped;
  return { taskId, priority: priorityOfQueue(keys, key) };
}

/**
 * Seconds since the lowest score (enqueue time in ms) across the three queues, 0 when all are
 * empty. A retried task keeps its original score, so its age counts from its first enqueue.
 */
export async function oldestQueuedAgeSeconds(redis: RedisClient, keys: QueueKeys, now = Date.now()): Promise<number> {
  const pipeline = redis.pipeline();
  for (const p of PRIORITIES) pipeline.zrange(keys.queue(p), "0", "0", "WITHSCORES");
  const results = (await pipeline.exec()) ?? [];
  let lowest = Number.POSITIVE_INFINITY;
  for (const [error, value] of results) {
    if (error) throw error;
    const score = Number((value as string[])[1]);
    if (Number.isFinite(score)) lowest = Math.min(lowest, score);
  }
  return Number.isFinite(lowest) ? Math.max(0, (now - lowest) / 1000) : 0;
}

async function execOrThrow(pipeline: ReturnType<RedisClient["pipeline"]>): Promise<unknown[]> {
  const results = (await pipeline.exec()) ?? [];
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}
