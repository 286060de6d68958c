/**
 * Where tasks wait whose agent is at its max_concurrent_refreshes (src/db/tasks/claims.ts): out of
 * the priority queues, so they block nobody behind them (no head-of-line blocking, and no actor
 * pops them again and again), in a sorted set per agent, until a task of that agent ends and
 * `release` moves the oldest back to the head of its queue. Sidekiq Enterprise's concurrent
 * limiter reschedules such a job; BullMQ Pro's group concurrency keeps the group's jobs aside
 * until a slot of the group frees: this is the latter.
 *
 * Like the queues, a park holds only ids and can be lost (a flush, a failover): the reconciler
 * counts a parked id of a limited agent as queued, moves parked ids back when their agent has
 * room, and re-dispatches pending tasks that are in no queue and no park.
 */
import type Redis from "ioredis";
import { PRIORITIES, type Priority } from "../core/tasks.ts";
import type { QueueKeys } from "./keys.ts";
import type { Deferred } from "../db/tasks/claims.ts";

/**
 * A parked id's score is its priority's rank times this plus its enqueue time in ms (about 1.8e12
 * today), so the oldest of the highest priority comes out first; every score stays below 2^53, so
 * the doubles Redis and Lua use hold it exactly.
 */
const RANK = 1e13;
/** A park no task was added to for this long expires: the reconciler re-dispatches what it held. */
export const PARK_TTL_MS = 3_600_000;

/** KEYS[1]: the park; KEYS[2..4]: the queues, highest first. ARGV[1]: how many. Returns the ids moved. */
const RELEASE_SCRIPT = `
local got = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local moved = {}
for i = 1, #got, 2 do
  local score = tonumber(got[i + 1])
  local rank = math.floor(score / ${RANK})
  redis.call('ZADD', KEYS[rank + 2], 'NX', score - rank * ${RANK}, got[i])
  moved[#moved + 1] = got[i]
end
return moved`;

/** What parking needs of a connection: a single Redis or a Cluster alike. */
type ParkingRedis = Pick<Redis, "defineCommand" | "pipeline" | "zcard" | "zrem">;
type WithRelease = ParkingRedis & { agentqRelease(park: string, high: string, medium: string, low: string, n: number): Promise<string[]> };

export class Parking {
  private readonly redis: WithRelease;

  constructor(
    redis: ParkingRedis,
    private readonly keys: QueueKeys,
  ) {
    if (!("agentqRelease" in redis)) redis.defineCommand("agentqRelease", { numberOfKeys: 1 + PRIORITIES.length, lua: RELEASE_SCRIPT });
    this.redis = redis as WithRelease;
  }

  /** Parks deferred tasks, one round trip. */
  async park(tasks: readonly Deferred[]): Promise<void> {
    if (tasks.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const t of tasks) pipeline.zadd(this.keys.parked(t.agentId), parkScore(t.priority, t.score), t.taskId);
    for (const agentId of new Set(tasks.map((t) => t.agentId))) pipeline.pexpire(this.keys.parked(agentId), PARK_TTL_MS);
    await execOrThrow(pipeline);
  }

  /** Moves up to `n` of the agent's parked ids (highest priority, oldest first) back into their queues, each at its old score. */
  async release(agentId: string, n: number): Promise<string[]> {
    if (n <= 0) return [];
    const [high, medium, low] = this.keys.queues as [string, string, string];
    return this.redis.agentqRelease(this.keys.parked(agentId), high, medium, low, n);
  }

  /** Moves every parked id of the agent back (its limit was raised or lifted). */
  async releaseAll(agentId: string): Promise<string[]> {
    const parked = await this.redis.zcard(this.keys.parked(agentId));
    return this.release(agentId, parked);
  }

  /** Drops a parked id (its task was cancelled). */
  async remove(agentId: string, taskId: string): Promise<boolean> {
    return (await this.redis.zrem(this.keys.parked(agentId), taskId)) > 0;
  }

  /** True when the id is parked (the reconciler asks it in batches). */
  async parkedAmong(tasks: readonly { taskId: string; agentId: string }[]): Promise<boolean[]> {
    if (tasks.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const t of tasks) pipeline.zscore(this.keys.parked(t.agentId), t.taskId);
    return ((await execOrThrow(pipeline)) as (string | null)[]).map((s) => s !== null);
  }

  /** How many ids the agent has parked. */
  count(agentId: string): Promise<number> {
    return this.redis.zcard(this.keys.parked(agentId));
  }
}

export const parkScore = (priority: Priority, score: number) => PRIORITIES.indexOf(priority) * RANK + score;

async function execOrThrow(pipeline: ReturnType<ParkingRedis["pipeline"]>): Promise<unknown[]> {
  const results = (await pipeline.exec()) ?? [];
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}
