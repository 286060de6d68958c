/**
 * How a worker actor takes task ids from the priority queues. Both calls are
 * priority-ordered (every high before any medium, every medium before any low;
 * oldest first within one) and never return more ids than asked for, so an
 * actor never holds more ids than it has free slots:
 *
 *  - `take(n)`: up to n ids at once, in ONE round trip (a Lua script over the
 *    three sorted sets, keys declared so it runs on Redis Cluster too);
 *  - `waitForOne(s)`: blocks (BZPOPMIN) until one id arrives, for an actor with
 *    nothing queued for it. It needs a connection of its own: a blocked
 *    connection serves nobody else.
 */
import type { RedisClient } from "./redisClient.ts";
import { PRIORITIES, type Priority } from "../core/tasks.ts";
import type { QueueKeys } from "./keys.ts";
import { popNext } from "./dispatch.ts";

export interface Popped {
  taskId: string;
  priority: Priority;
}

/** KEYS: the queues, highest priority first. ARGV[1]: how many ids at most. Returns id, queue index pairs. */
const TAKE_SCRIPT = `
local want = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if want <= 0 then break end
  local got = redis.call('ZPOPMIN', KEYS[i], want)
  for j = 1, #got, 2 do
    out[#out + 1] = got[j]
    out[#out + 1] = i
  end
  want = want - #got / 2
end
return out`;

type WithTake = RedisClient & { agentqTake(k1: string, k2: string, k3: string, n: number): Promise<(string | number)[]> };

export class TaskPopper {
  private readonly commands: WithTake;

  constructor(
    commands: RedisClient,
    private readonly blocking: RedisClient,
    private readonly keys: QueueKeys,
  ) {
    if (keys.queues.length !== PRIORITIES.length) throw new Error("one queue per priority expected");
    // defineCommand sends EVALSHA and falls back to EVAL once after a script cache flush.
    if (!("agentqTake" in commands)) commands.defineCommand("agentqTake", { numberOfKeys: PRIORITIES.length, lua: TAKE_SCRIPT });
    this.commands = commands as WithTake;
  }

  async take(n: number): Promise<Popped[]> {
    if (n <= 0) return [];
    const [high, medium, low] = this.keys.queues as [string, string, string];
    const flat = await this.commands.agentqTake(high, medium, low, n);
    const popped: Popped[] = [];
    for (let i = 0; i < flat.length; i += 2) popped.push({ taskId: String(flat[i]), priority: PRIORITIES[Number(flat[i + 1]) - 1]! });
    return popped;
  }

  waitForOne(timeoutSeconds: number): Promise<Popped | null> {
    return popNext(this.blocking, this.keys, timeoutSeconds);
  }

  /** Wakes a waitForOne now instead of at its timeout (drain, close). */
  interrupt(): void {
    this.blocking.disconnect();
  }
}
