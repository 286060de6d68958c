/**
 * Every ioredis connection agentq opens is built here, from a RedisTarget: where Redis is and
 * how it is deployed. Callers choose only their connection's behaviour (retries per request,
 * the offline queue, auto-pipelining, lazy connect); they never say where to connect, so a
 * deployment mode added here reaches the API, the supervisor, the worker threads, the
 * blocking pops, the subscribers, the start-up wait and `bun run keys` at once.
 *
 * A RedisTarget is plain data (worker threads receive it in their init message): one variant
 * per mode, discriminated on `mode`.
 *
 * Sentinel mode uses ioredis's own Sentinel support: each connection asks the sentinels for the
 * primary of `name` (role master, checked on connect) and asks again on every reconnect, so a
 * connection dropped by a failover comes back to the promoted replica by itself, the blocking
 * pops and the subscribers too (ioredis resends the unanswered commands and resubscribes).
 *
 * Cluster mode uses ioredis's Cluster: it learns the slot map from any of the given nodes and
 * sends each command to the primary of its key's slot. Every agentq key is in ONE slot (the
 * `{coverage}` tag, src/queue/keys.ts), so the multi-key pops, the scripts and the pipelines
 * run as on one server. Subscribers get a Cluster client too: classic pub/sub is broadcast to
 * every node, and ioredis subscribes on one node of its choice and moves to another if it goes.
 */
import Redis, { Cluster, type ClusterOptions, type RedisOptions } from "ioredis";
import type { Config } from "../config.ts";
import { isCluster, type RedisClient } from "./redisClient.ts";

/** One Redis server at REDIS_URL. */
export interface SingleRedisTarget {
  mode: "single";
  url: string;
}

export interface HostPort {
  host: string;
  port: number;
}

/** The primary of `name`, wherever the sentinels say it is (AGENTQ_REDIS_SENTINELS). */
export interface SentinelRedisTarget {
  mode: "sentinel";
  /** REDIS_URL: its credentials, database and scheme (rediss: TLS) apply to the primary; its host and port are unused. */
  url: string;
  sentinels: HostPort[];
  name: string;
  /** The sentinels' own password; absent when they have none. */
  sentinelPassword?: string;
}

/** A Redis Cluster, found from some of its nodes (AGENTQ_REDIS_CLUSTER_NODES). */
export interface ClusterRedisTarget {
  mode: "cluster";
  /** REDIS_URL: its credentials and scheme (rediss: TLS) apply to every node; its host and port are unused (database 0 only). */
  url: string;
  nodes: HostPort[];
}

export type RedisTarget = SingleRedisTarget | SentinelRedisTarget | ClusterRedisTarget;

/** The settings a RedisTarget is made of. */
export type RedisTargetConfig = Pick<Config, "redisUrl" | "redisSentinels" | "redisSentinelName" | "redisSentinelPassword" | "redisClusterNodes">;

export function redisTargetOf(config: RedisTargetConfig): RedisTarget {
  if (config.redisClusterNodes.length > 0)
    return { mode: "cluster", url: config.redisUrl, nodes: config.redisClusterNodes.map(({ host, port }) => ({ host, port })) };
  if (config.redisSentinels.length === 0) return { mode: "single", url: config.redisUrl };
  return {
    mode: "sentinel",
    url: config.redisUrl,
    sentinels: config.redisSentinels.map(({ host, port }) => ({ host, port })),
    name: config.redisSentinelName,
    ...(config.redisSentinelPassword ? { sentinelPassword: config.redisSentinelPassword } : {}),
  };
}

/**
 * What a caller may choose for its own connection. Where it connects (host, port, credentials,
 * database, TLS) comes from the target only.
 */
export type ConnectionOptions = Omit<
  RedisOptions,
  "host" | "port" | "path" | "username" | "password" | "db" | "tls" | "sentinels" | "name" | "role" | "sentinelPassword" | "enableTLSForSentinelMode"
>;

export function openRedis(target: SingleRedisTarget | SentinelRedisTarget, options?: ConnectionOptions): Redis;
export function openRedis(target: RedisTarget, options?: ConnectionOptions): RedisClient;
export function openRedis(target: RedisTarget, options: ConnectionOptions = {}): RedisClient {
  switch (target.mode) {
    case "cluster":
      return new Cluster(
        target.nodes.map(({ host, port }) => ({ host, port })),
        clusterOptions(options, credentialsOf(target.url)),
      );
    case "single":
      return new Redis(target.url, options);
    case "sentinel":
      return new Redis({ ...sentinelOptions(target), ...boundedLikeTheCaller(options), ...options });
    default:
      return unknownMode(target);
  }
}

function sentinelOptions(target: SentinelRedisTarget): RedisOptions {
  const url = new URL(target.url);
  const db = Number(url.pathname.slice(1) || "0");
  return {
    sentinels: target.sentinels.map(({ host, port }) => ({ host, port })),
    name: target.name,
    role: "master",
    sentinelPassword: target.sentinelPassword,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: Number.isInteger(db) ? db : 0,
    ...(url.protocol === "rediss:" ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    // A primary demoted while our connection stays open (a manual SENTINEL FAILOVER, an old primary
    // back as a replica) answers writes with READONLY: reconnect, which asks the sentinels again,
    // and resend the command to the new primary.
    reconnectOnError: (error) => (error.message.startsWith("READONLY") ? 2 : false),
  };
}

/**
 * A caller that bounds its reconnects (the start-up probe, `bun run keys`) bounds its rounds of
 * the sentinels the same way: ioredis's own sentinel retry would otherwise keep going forever.
 */
function boundedLikeTheCaller(options: ConnectionOptions): RedisOptions {
  if (options.retryStrategy === undefined || options.sentinelRetryStrategy !== undefined) return {};
  const retry = options.retryStrategy;
  return { sentinelRetryStrategy: retry ?? (() => null) };
}

/**
 * A second connection like `client`, to the same target, with `options` for its own behaviour
 * (a subscriber: a subscribed connection runs no other commands). Cluster.duplicate takes the
 * startup nodes first and the per-node options apart, hence this one entry point.
 */
export function duplicateRedis(client: RedisClient, options: ConnectionOptions): RedisClient {
  return isCluster(client) ? client.duplicate([], clusterOptions(options, {})) : client.duplicate(options);
}

function credentialsOf(url: string): RedisOptions {
  const u = new URL(url);
  return {
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

/**
 * A caller's options, split as Cluster wants them: what concerns the commands of the whole
 * client at the top (auto-pipelining, the offline queue, lazy connect, reconnect strategy), the
 * rest for each node's connection (redisOptions: retries per request, timeouts, the name).
 */
function clusterOptions(options: ConnectionOptions, credentials: RedisOptions): ClusterOptions {
  const { enableAutoPipelining, autoPipeliningIgnoredCommands, enableOfflineQueue, enableReadyCheck, lazyConnect, retryStrategy, ...perNode } = options;
  const top: ClusterOptions = { enableAutoPipelining, autoPipeliningIgnoredCommands, enableOfflineQueue, enableReadyCheck, lazyConnect };
  for (const key of Object.keys(top) as (keyof ClusterOptions)[]) if (top[key] === undefined) delete top[key];
  // A caller that bounds its reconnects (the start-up probe) bounds the cluster's the same way.
  if (retryStrategy !== undefined) top.clusterRetryStrategy = retryStrategy;
  return { ...top, redisOptions: { ...credentials, ...perNode } };
}

/** Where the target points, for logs: no password. */
export function describeRedisTarget(target: RedisTarget): string {
  switch (target.mode) {
    case "single":
      return withoutPassword(target.url);
    case "cluster":
      return `cluster via ${target.nodes.map(({ host, port }) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)).join(",")}`;
    case "sentinel":
      return `sentinel primary "${target.name}" via ${target.sentinels.map(({ host, port }) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)).join(",")}`;
    default:
      return unknownMode(target);
  }
}

function withoutPassword(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

function unknownMode(target: never): never {
  throw new Error(`unknown Redis mode ${JSON.stringify((target as { mode?: unknown }).mode)}`);
}
