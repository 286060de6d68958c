/**
 * What a task's completion estimate needs from Redis, read in one round trip:
 * one Lua script (EVALSHA; ioredis sends EVAL the first time on a connection and
 * after a NOSCRIPT) returns
 *
 *   - the task's queue position across priorities: ZCARD of every higher queue + ZRANK in its own,
 *     both O(log n) or O(1), never a scan;
 *   - the recent run-time samples (LRANGE of the capped runtimes list);
 *   - the capacity hash (HGETALL: one small entry per live supervisor).
 *
 * Every key is passed in KEYS and shares the `{coverage}` hash tag (src/queue/keys.ts), so
 * the script runs on Redis Cluster too. The script only reads. The ETA maths stays with
 * its user (src/tasks/service.ts); this module only decodes what Redis holds.
 */
import type { RedisClient } from "./redisClient.ts";
import { PRIORITIES, type Priority } from "../core/tasks.ts";
import type { QueueKeys } from "./keys.ts";

/** The name the script is defined under on a client (ioredis `defineCommand`). */
const COMMAND = "agentqQueueEstimate";

/**
 * KEYS[1..3] queue:high, queue:medium, queue:low; KEYS[4] runtimes; KEYS[5] capacity.
 * ARGV[1] task id ("" when no position is wanted), ARGV[2] index of the task's queue in KEYS,
 * ARGV[3] how many run-time samples to return.
 * Returns {position (0 = not queued), samples, flat capacity hash}.
 */
const LUA = `
local position = 0
if ARGV[1] ~= '' then
  local own = tonumber(ARGV[2])
  local rank = redis.call('ZRANK', KEYS[own], ARGV[1])
  if rank then
    position = rank + 1
    for i = 1, own - 1 do
      position = position + redis.call('ZCARD', KEYS[i])
    end
  end
end
local samples = {}
local wanted = tonumber(ARGV[3])
if wanted > 0 then
  samples = redis.call('LRANGE', KEYS[4], 0, wanted - 1)
end
local capacity = redis.call('HGETALL', KEYS[5])
return {position, samples, capacity}
`;

export interface QueueSnapshot {
  /** 1 = next to run, across priorities; null when not asked for or not queued. */
  position: number | null;
  /** Recent run times in ms, newest first (malformed entries dropped). */
  runtimesMs: number[];
  /** Summed over supervisors whose capacity entry has not expired (0 workers when none is live). */
  capacity: { workers: number; busy: number };
}

type ScriptReply = [number, string[], string[]];
type EstimateCommand = (...args: (string | number)[]) => unknown;

const defined = new WeakSet<RedisClient>();

export class QueueEstimator {
  constructor(
    private readonly redis: RedisClient,
    readonly keys: QueueKeys,
  ) {
    if (!defined.has(redis)) {
      redis.defineCommand(COMMAND, { numberOfKeys: 5, lua: LUA, readOnly: true });
      defined.add(redis);
    }
  }

  /**
   * One Redis command. It goes out at once in a pipeline of its own (not the
   * auto-pipeline, which waits for setImmediate), so when the caller has just
   * sent a dispatch on the same connection, both are on the wire before either
   * reply: the script sees the ZADD and the request still costs one round trip.
   */
  async read(task: { taskId: string; priority: Priority } | null, samples: number): Promise<QueueSnapshot> {
    const pipeline = this.redis.pipeline();
    this.append(pipeline, task, samples);
    const [error, reply] = (await pipeline.exec())?.[0] ?? [new Error("queue estimate: the pipeline was discarded"), null];
    if (error) throw error;
    return this.decode(reply);
  }

  /** Adds the one script to a pipeline of the caller's (src/queue/placement.ts); `decode` reads its reply. */
  append(pipeline: Pipeline, task: { taskId: string; priority: Priority } | null, samples: number): void {
    const k = this.keys;
    (pipeline as unknown as Record<string, EstimateCommand>)[COMMAND]!(
      ...k.queues,
      k.runtimes,
      k.capacity,
      task?.taskId ?? "",
      task ? PRIORITIES.indexOf(task.priority) + 1 : 1,
      samples,
    );
  }

  decode(reply: unknown): QueueSnapshot {
    const [position, rawSamples, flatCapacity] = reply as ScriptReply;
    return {
      position: position > 0 ? position : null,
      runtimesMs: rawSamples.map(Number).filter(Number.isFinite),
      capacity: liveCapacity(flatCapacity, Date.now()),
    };
  }
}

type Pipeline = ReturnType<RedisClient["pipeline"]>;

/** Sums the entries `{"workers","busy","expires"}` whose heartbeat has not expired; malformed ones are ignored. */
function liveCapacity(flat: readonly string[], now: number): { workers: number; busy: number } {
  let workers = 0;
  let busy = 0;
  for (let i = 1; i < flat.length; i += 2) {
    try {
      const c = JSON.parse(flat[i]!) as { workers?: unknown; busy?: unknown; expires?: unknown };
      if (typeof c.expires !== "number" || c.expires < now) continue;
      if (typeof c.workers === "number" && Number.isFinite(c.workers)) workers += c.workers;
      if (typeof c.busy === "number" && Number.isFinite(c.busy)) busy += c.busy;
    } catch {
      // a malformed entry is ignored
    }
  }
  return { workers, busy };
}
