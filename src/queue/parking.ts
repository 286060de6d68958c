/**
 * Where tasks wait whose agent is at its max_concurrent_refreshes (src/db/tasks/claims.ts): out of
 * the priority queues, so they block nobody behind them (no head-of-line blocking, and no actor
 * pops them again and again), in a sorted set per agent, until a task of that agent ends and
 * `release` moves the oldest back to the head of its queue. Sidekiq Enterprise's concurrent
 * limiter reschedules such a job; BullMQ Pro's group concurrency keeps the group's jobs aside
 * until a slot of the group frees: this is the latter.
 *
 * A place can free while the park is empty although a deferral is on its way to it (the claim
 * that deferred it ran before the ending committed; its park comes after the ending's release).
 * The release then leaves a credit, and a park that comes within CREDIT_TTL_MS sends that many
 * ids straight back, so such a task does not wait for the reconciler. A credit nobody needed
 * costs one task one extra pop and deferral.
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
/** How long a credit (a place freed while the park was empty) waits for a deferral in flight. */
export const CREDIT_TTL_MS = 1_000;

/** Every script's KEYS: the park, its credit, the queues (highest first). Moves up to n parked ids back at their old scores. */
const MOVE = `
local function move(n)
  local got = redis.call('ZPOPMIN', KEYS[1], n)
  local moved = {}
  for i = 1, #got, 2 do
    local score = tonumber(got[i + 1])
    local rank = math.floor(score / ${RANK})
    redis.call('ZADD', KEYS[rank + 3], 'NX', score - rank * ${RANK}, got[i])
    moved[#moved + 1] = got[i]
  end
  return moved
end`;

/** ARGV[1]: how many; ARGV[2]: '1' to leave a credit for what the park could not give. Returns the ids moved. */
const RELEASE_SCRIPT = `${MOVE}
local n = tonumber(ARGV[1])
local moved = move(n)
if ARGV[2] == '1' and #moved < n then
  redis.call('INCRBY', KEYS[2], n - #moved)
  redis.call('PEXPIRE', KEYS[2], ${CREDIT_TTL_MS})
end
return moved`;

/** ARGV[1]: the park's time to live (ms); then score, id pairs. Parks them, then spends a credit on the oldest. Returns the ids moved. */
const PARK_SCRIPT = `${MOVE}
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local credit = tonumber(redis.call('GET', KEYS[2]) or '0')
if credit <= 0 then return {} end
redis.call('DEL', KEYS[2])
return move(credit)`;

/** What parking needs of a connection: a single Redis or a Cluster alike. */
type ParkingRedis = Pick<Redis, "defineCommand" | "pipeline" | "zcard" | "zrem">;
type ScriptKeys = [park: string, credit: string, high: string, medium: string, low: string];
type Script<R> = (...args: [...ScriptKeys, ...(string | number)[]]) => R;
type WithScripts = ParkingRedis & { agentqRelease: Script<Promise<string[]>> };
type Pipeline = ReturnType<ParkingRedis["pipeline"]>;

export class Parking {
  private readonly redis: WithScripts;

  constructor(
    redis: ParkingRedis,
    private readonly keys: QueueKeys,
  ) {
    const numberOfKeys = 2 + PRIORITIES.length;
    // defineCommand sends EVALSHA and falls back to EVAL once after a script cache flush.
    if (!("agentqRelease" in redis)) redis.defineCommand("agentqRelease", { numberOfKeys, lua: RELEASE_SCRIPT });
    if (!("agentqPark" in redis)) redis.defineCommand("agentqPark", { numberOfKeys, lua: PARK_SCRIPT });
    this.redis = redis as WithScripts;
  }

  /**
   * Parks deferred tasks: one script per agent, all in one round trip. Returns the ids a credit
   * sent straight back to their queues (places that freed while they were on their way here).
   */
  async park(tasks: readonly Deferred[]): Promise<string[]> {
    if (tasks.length === 0) return [];
    const pipeline = this.redis.pipeline() as Pipeline & { agentqPark: Script<unknown> };
    for (const [agentId, mine] of Map.groupBy(tasks, (t) => t.agentId))
      pipeline.agentqPark(...this.scriptKeys(agentId), PARK_TTL_MS, ...mine.flatMap((t) => [parkScore(t.priority, t.score), t.taskId]));
    return ((await execOrThrow(pipeline)) as string[][]).flat();
  }

  /**
   * Moves up to `n` of the agent's parked ids (highest priority, oldest first) back into their
   * queues, each at its old score. `credit`: an ending's release, which leaves a credit for what
   * the park could not give (a deferral may be on its way).
   */
  async release(agentId: string, n: number, options: { credit?: boolean } = {}): Promise<string[]> {
    if (n <= 0) return [];
    return this.redis.agentqRelease(...this.scriptKeys(agentId), n, options.credit ? "1" : "0");
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

  private scriptKeys(agentId: string): ScriptKeys {
    const [high, medium, low] = this.keys.queues as [string, string, string];
    return [this.keys.parked(agentId), this.keys.parkCredit(agentId), high, medium, low];
  }
}

export const parkScore = (priority: Priority, score: number) => PRIORITIES.indexOf(priority) * RANK + score;

async function execOrThrow(pipeline: Pipeline): Promise<unknown[]> {
  const results = (await pipeline.exec()) ?? [];
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}
