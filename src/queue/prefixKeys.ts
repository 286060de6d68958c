/**
 * Finding and deleting every key of a prefix (tests, tooling). On Redis Cluster, KEYS and SCAN
 * answer for the node they are sent to only, so both go to every primary; agentq's own keys all
 * live in the `{coverage}` slot (src/queue/keys.ts), but a stray key of the prefix may be
 * anywhere. SCAN, not KEYS: it never blocks a production server for long.
 */
import type { Cluster, Redis } from "ioredis";
import type { QueueKeys } from "./keys.ts";

/** The servers that hold keys: every primary of a cluster, or the one server. */
function keyHolders(redis: Redis | Cluster): Redis[] {
  return "isCluster" in redis && redis.isCluster ? (redis as Cluster).nodes("master") : [redis as Redis];
}

async function scanNode(node: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return found;
}

/** Every key matching `keys.pattern`, on every node (a key is listed once: each slot has one primary). */
export async function keysOfPrefix(redis: Redis | Cluster, keys: Pick<QueueKeys, "pattern">): Promise<string[]> {
  const perNode = await Promise.all(keyHolders(redis).map((node) => scanNode(node, keys.pattern)));
  return perNode.flat();
}

/**
 * Deletes every key matching `keys.pattern` on every node; returns how many were deleted.
 * One DEL per key (pipelined per node): a DEL of several keys must not span slots on a cluster.
 */
export async function deletePrefixKeys(redis: Redis | Cluster, keys: Pick<QueueKeys, "pattern">): Promise<number> {
  const counts = await Promise.all(
    keyHolders(redis).map(async (node) => {
      const found = await scanNode(node, keys.pattern);
      if (found.length === 0) return 0;
      const pipeline = node.pipeline();
      for (const key of found) pipeline.del(key);
      const results = (await pipeline.exec()) ?? [];
      return results.reduce((n, [error, deleted]) => {
        if (error) throw error;
        return n + Number(deleted);
      }, 0);
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
}
