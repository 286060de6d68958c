/**
 * Capacity heartbeats: each supervisor advertises its task slots and how many
 * are busy, so the API can estimate completion times. Entries carry their own
 * expiry: a supervisor that died stops counting once its heartbeat is stale.
 */
import type { RedisClient } from "./redisClient.ts";
import type { QueueKeys } from "./keys.ts";

export interface Capacity {
  /** Tasks this supervisor can run at once (threads x concurrency). */
  workers: number;
  busy: number;
}

export async function publishCapacity(redis: RedisClient, keys: QueueKeys, supervisorId: string, capacity: Capacity, ttlMs: number): Promise<void> {
  await redis.hset(keys.capacity, supervisorId, JSON.stringify({ ...capacity, expires: Date.now() + ttlMs }));
}

export async function withdrawCapacity(redis: RedisClient, keys: QueueKeys, supervisorId: string): Promise<void> {
  await redis.hdel(keys.capacity, supervisorId);
}

/** One supervisor's live heartbeat. */
export interface SupervisorCapacity extends Capacity {
  supervisorId: string;
  /** When its heartbeat lapses unless renewed (ms since the epoch). */
  expires: number;
}

/**
 * The supervisors whose heartbeat has not lapsed (one HGETALL of a hash with one small entry
 * per supervisor), ordered by id; malformed entries are left out.
 */
export async function readCapacity(redis: RedisClient, keys: QueueKeys, now = Date.now()): Promise<SupervisorCapacity[]> {
  const entries = await redis.hgetall(keys.capacity);
  const live: SupervisorCapacity[] = [];
  for (const [supervisorId, raw] of Object.entries(entries)) {
    let entry: { workers?: unknown; busy?: unknown; expires?: unknown };
    try {
      entry = JSON.parse(raw) as typeof entry;
    } catch {
      continue;
    }
    const { workers, busy, expires } = entry;
    if (typeof workers !== "number" || typeof busy !== "number" || typeof expires !== "number" || expires < now) continue;
    live.push({ supervisorId, workers, busy, expires });
  }
  return live.sort((a, b) => (a.supervisorId < b.supervisorId ? -1 : 1));
}
