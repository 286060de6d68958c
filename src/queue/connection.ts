/**
 * Every ioredis connection agentq opens is built here, from a RedisTarget: where Redis is and
 * how it is deployed. Callers choose only their connection's behaviour (retries per request,
 * the offline queue, auto-pipelining, lazy connect); they never say where to connect, so a
 * deployment mode added here reaches the API, the supervisor, the worker threads, the
 * blocking pops, the subscribers, the start-up wait and `bun run keys` at once.
 *
 * A RedisTarget is plain data (worker threads receive it in their init message): one variant
 * per mode, discriminated on `mode`.
 */
import Redis, { type RedisOptions } from "ioredis";
import type { Config } from "../config.ts";

/** One Redis server at REDIS_URL. */
export interface SingleRedisTarget {
  mode: "single";
  url: string;
}

export type RedisTarget = SingleRedisTarget;

/** The settings a RedisTarget is made of. */
export type RedisTargetConfig = Pick<Config, "redisUrl">;

export function redisTargetOf(config: RedisTargetConfig): RedisTarget {
  return { mode: "single", url: config.redisUrl };
}

/**
 * What a caller may choose for its own connection. Where it connects (host, port, credentials,
 * database, TLS) comes from the target only.
 */
export type ConnectionOptions = Omit<RedisOptions, "host" | "port" | "path" | "username" | "password" | "db" | "tls">;

export function openRedis(target: RedisTarget, options: ConnectionOptions = {}): Redis {
  switch (target.mode) {
    case "single":
      return new Redis(target.url, options);
    default:
      return unknownMode(target.mode);
  }
}

/** Where the target points, for logs: no password. */
export function describeRedisTarget(target: RedisTarget): string {
  switch (target.mode) {
    case "single":
      return withoutPassword(target.url);
    default:
      return unknownMode(target.mode);
  }
}

function withoutPassword(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

function unknownMode(mode: never): never {
  throw new Error(`unknown Redis mode ${JSON.stringify(mode)}`);
}
