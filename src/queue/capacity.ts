/**
 * Capacity heartbeats: each supervisor advertises its task slots and how many
 * are busy, so the API can estimate completion times. Entries carry their own
 * expiry: a supervisor that died stops counting once its heartbeat is stale.
 */
import type Redis from "ioredis";
import type { QueueKeys } from "./keys.ts";

export interface Capacity {
  /** Tasks this supervisor can run at once (threads x concurrency). */
  workers: number;
  busy: number;
}

export async function publishCapacity(redis: Redis, keys: QueueKeys, supervisorId: string, capacity: Capacity, ttlMs: number): Promise<void> {
  await redis.hset(keys.capacity, supervisorId, JSON.stringify({ ...capacity, expires: Date.now() + ttlMs }));
}

export async function withdrawCapacity(redis: Redis, keys: QueueKeys, supervisorId: string): Promise<void> {
  await redis.hdel(keys.capacity, supervisorId);
}
