/**
 * The cancel bus: the API publishes the id of a running task it cancelled;
 * every supervisor hears it and relays it to the actor running the task.
 * Pub/sub is fire-and-forget: a supervisor that was disconnected at that moment
 * still learns it at its next lease renewal (a cancel clears the lease).
 */
import type { RedisClient } from "./redisClient.ts";
import type { QueueKeys } from "./keys.ts";

export function publishCancel(redis: RedisClient, keys: QueueKeys, taskId: string): Promise<number> {
  return redis.publish(keys.cancelChannel, taskId);
}

/** Calls `onCancel` for every cancel published from now on; resolves once subscribed. Returns the unsubscribe. */
export async function subscribeCancels(subscriber: RedisClient, keys: QueueKeys, onCancel: (taskId: string) => void): Promise<() => Promise<void>> {
  const listener = (channel: string, taskId: string) => {
    if (channel === keys.cancelChannel) onCancel(taskId);
  };
  subscriber.on("message", listener);
  await subscriber.subscribe(keys.cancelChannel);
  return async () => {
    subscriber.off("message", listener);
    await subscriber.unsubscribe(keys.cancelChannel).catch(() => {});
  };
}
