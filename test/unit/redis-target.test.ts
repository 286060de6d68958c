/**
 * Redis deployment settings (AGENTQ_REDIS_SENTINELS, _SENTINEL_NAME, _SENTINEL_PASSWORD) in
 * src/config.ts, and how the connection factory turns a target into ioredis options
 * (src/queue/connection.ts), without connecting.
 */
import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig, parseHostPortList } from "../../src/config.ts";
import { describeRedisTarget, openRedis, redisTargetOf, type RedisTarget, type SentinelRedisTarget } from "../../src/queue/connection.ts";

function configError(env: Record<string, string>, overrides = {}): ConfigError {
  try {
    loadConfig(env, overrides);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("no ConfigError");
}

describe("sentinel settings", () => {
  test("unset: single mode at REDIS_URL", () => {
    const config = loadConfig({ REDIS_URL: "redis://cache:6380/3" });
    expect(config.redisSentinels).toEqual([]);
    expect(redisTargetOf(config)).toEqual({ mode: "single", url: "redis://cache:6380/3" });
  });

  test("a host:port list, a name and a password make a sentinel target (IPv6 in brackets, blanks dropped)", () => {
    const config = loadConfig({
      AGENTQ_REDIS_SENTINELS: " s1.internal:26379, 10.0.0.2:26380 ,[fd00::3]:26381,",
      AGENTQ_REDIS_SENTINEL_NAME: "agentq-main",
      AGENTQ_REDIS_SENTINEL_PASSWORD: "s3cret",
      REDIS_URL: "redis://:pw@ignored:6379/2",
    });
    expect(redisTargetOf(config)).toEqual({
      mode: "sentinel",
      url: "redis://:pw@ignored:6379/2",
      sentinels: [
        { host: "s1.internal", port: 26379 },
        { host: "10.0.0.2", port: 26380 },
        { host: "fd00::3", port: 26381 },
      ],
      name: "agentq-main",
      sentinelPassword: "s3cret",
    });
    expect(redisTargetOf({ ...config, redisSentinelPassword: "" })).not.toHaveProperty("sentinelPassword");
  });

  test("a bad entry is named, with the whole value; nothing else is said about the sentinels", () => {
    expect(configError({ AGENTQ_REDIS_SENTINELS: "s1:26379,s2", AGENTQ_REDIS_SENTINEL_NAME: "m" }).problems).toEqual([
      'AGENTQ_REDIS_SENTINELS: "s2" is not host:port (a port from 1 to 65535) (got "s1:26379,s2")',
    ]);
    expect(configError({ AGENTQ_REDIS_SENTINELS: "s1:0" }).problems).toEqual([
      'AGENTQ_REDIS_SENTINELS: "s1:0" is not host:port (a port from 1 to 65535) (got "s1:0")',
    ]);
    expect(configError({ AGENTQ_REDIS_SENTINELS: "s1:70000,fd00::1:26379" }).problems[0]).toContain('"s1:70000" is not host:port');
    expect(configError({ AGENTQ_REDIS_SENTINELS: "s1:70000,fd00::1:26379" }).problems[1]).toContain('"fd00::1:26379" is not host:port');
    expect(configError({ AGENTQ_REDIS_SENTINELS: " , ," }).problems).toEqual(['AGENTQ_REDIS_SENTINELS: no host:port in the list (got " , ,")']);
  });

  test("sentinels without a name, or a name or a password without sentinels, are refused", () => {
    expect(configError({ AGENTQ_REDIS_SENTINELS: "s1:26379" }).message).toContain("AGENTQ_REDIS_SENTINEL_NAME: required with AGENTQ_REDIS_SENTINELS");
    expect(configError({ AGENTQ_REDIS_SENTINEL_NAME: "m" }).message).toContain("AGENTQ_REDIS_SENTINEL_NAME: set without AGENTQ_REDIS_SENTINELS");
    expect(configError({ AGENTQ_REDIS_SENTINEL_PASSWORD: "p" }).message).toContain("AGENTQ_REDIS_SENTINEL_PASSWORD: set without AGENTQ_REDIS_SENTINELS");
    expect(configError({ AGENTQ_REDIS_SENTINELS: "s1:26379", AGENTQ_REDIS_SENTINEL_NAME: "bad name" }).message).toContain("AGENTQ_REDIS_SENTINEL_NAME");
    // The pairing is checked on overrides too (tests, benchmarks).
    expect(() => loadConfig({}, { redisSentinels: [{ host: "s1", port: 26379 }] })).toThrow("AGENTQ_REDIS_SENTINEL_NAME: required");
    expect(loadConfig({ AGENTQ_REDIS_SENTINELS: "junk" }, { redisSentinels: [{ host: "s1", port: 1 }], redisSentinelName: "m" }).redisSentinels).toEqual([
      { host: "s1", port: 1 },
    ]);
  });

  test("parseHostPortList keeps the order and splits on the last colon only for bracketed IPv6", () => {
    expect(parseHostPortList("a:1,[::1]:2")).toEqual({ entries: [{ host: "a", port: 1 }, { host: "::1", port: 2 }] });
    expect(parseHostPortList("a:b")).toEqual({ problems: ['"a:b" is not host:port (a port from 1 to 65535)'] });
  });

  test("the programs refuse to start on bad sentinel settings: exit 78 and the message on stderr", () => {
    const run = Bun.spawnSync(["bun", "src/cli/supervisor.ts"], {
      env: { ...process.env, AGENTQ_REDIS_SENTINELS: "127.0.0.1:26379", DATABASE_URL: "postgres://root@127.0.0.1:1/none" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(run.exitCode).toBe(78);
    expect(run.stderr.toString()).toContain("AGENTQ_REDIS_SENTINEL_NAME: required with AGENTQ_REDIS_SENTINELS");
  });
});

describe("connection factory options", () => {
  const sentinel = (url: string): SentinelRedisTarget => ({ mode: "sentinel", url, sentinels: [{ host: "127.0.0.1", port: 26379 }], name: "m", sentinelPassword: "sp" });

  test("sentinel mode: REDIS_URL's credentials, database and TLS go to the primary; the sentinels' password to them; role master", () => {
    const redis = openRedis(sentinel("rediss://agent%40q:p%3Ass@ignored:1/4"), { lazyConnect: true, enableAutoPipelining: true });
    try {
      expect(redis.options).toMatchObject({
        sentinels: [{ host: "127.0.0.1", port: 26379 }],
        name: "m",
        role: "master",
        sentinelPassword: "sp",
        username: "agent@q",
        password: "p:ss",
        db: 4,
        tls: {},
        enableTLSForSentinelMode: true,
        enableAutoPipelining: true,
      });
      // Demoted primaries answer READONLY: reconnect (ask the sentinels again) and resend.
      expect(redis.options.reconnectOnError!(new Error("READONLY You can't write against a read only replica."))).toBe(2);
      expect(redis.options.reconnectOnError!(new Error("WRONGTYPE"))).toBe(false);
    } finally {
      redis.disconnect();
    }
  });

  test("sentinel mode without credentials: none sent; a caller's bounded retries bound the sentinel rounds too", () => {
    const noRetry = openRedis(sentinel("redis://ignored:1"), { lazyConnect: true, retryStrategy: () => null });
    const bounded = openRedis(sentinel("redis://ignored:1"), { lazyConnect: true, retryStrategy: (n) => (n > 1 ? null : 100) });
    const own = openRedis(sentinel("redis://ignored:1"), { lazyConnect: true, retryStrategy: null, sentinelRetryStrategy: () => 5 });
    const unbounded = openRedis(sentinel("redis://ignored:1"), { lazyConnect: true });
    try {
      expect(noRetry.options.username).toBeNil();
      expect(noRetry.options.password).toBeNil();
      expect(noRetry.options.db).toBe(0);
      expect(noRetry.options.tls).toBeUndefined();
      expect(noRetry.options.sentinelRetryStrategy!(1)).toBeNull();
      expect([bounded.options.sentinelRetryStrategy!(1), bounded.options.sentinelRetryStrategy!(2)]).toEqual([100, null]);
      expect(own.options.sentinelRetryStrategy!(9)).toBe(5);
      // Left to ioredis: it keeps asking the sentinels (its default backoff).
      expect(typeof unbounded.options.sentinelRetryStrategy!(1)).toBe("number");
    } finally {
      for (const r of [noRetry, bounded, own, unbounded]) r.disconnect();
    }
  });

  test("descriptions for logs: the sentinels and the name, never a password", () => {
    const t = sentinel("redis://:secret@ignored:1/0");
    const text = describeRedisTarget({ ...t, sentinels: [...(t as { sentinels: { host: string; port: number }[] }).sentinels, { host: "fd00::1", port: 26380 }] });
    expect(text).toBe('sentinel primary "m" via 127.0.0.1:26379,[fd00::1]:26380');
    expect(text).not.toContain("secret");
  });

  test("an unknown mode is refused by name", () => {
    expect(() => openRedis({ mode: "memcached" } as unknown as RedisTarget)).toThrow('unknown Redis mode "memcached"');
    expect(() => describeRedisTarget({ mode: "memcached" } as unknown as RedisTarget)).toThrow('unknown Redis mode "memcached"');
  });
});
