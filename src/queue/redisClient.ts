/**
 * What agentq holds when it holds "a Redis connection": one server's connection (single and
 * Sentinel modes) or a Redis Cluster client (src/queue/connection.ts opens both). They run the
 * same commands, pipelines, scripts and pub/sub; only a few things differ (duplicate(), the
 * per-node SCAN of src/queue/prefixKeys.ts), and those ask isCluster().
 */
import type { Cluster, Redis } from "ioredis";

export type RedisClient = Redis | Cluster;

export function isCluster(client: RedisClient): client is Cluster {
  return (client as Partial<Cluster>).isCluster === true;
}
