/**
 * Redis Cluster settings (AGENTQ_REDIS_CLUSTER_NODES) in src/config.ts, and what the connection
 * factory (src/queue/connection.ts) makes of a cluster target: a Cluster client whose options
 * carry REDIS_URL's credentials to every node and the caller's choices where Cluster reads them.
 * No cluster is needed (lazy connections); test/e2e/redis-cluster.test.ts runs on a real one.
 */
import { describe, expect, test } from "bun:test";
import { Cluster } from "ioredis";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { describeRedisTarget, duplicateRedis, openRedis, redisTargetOf, type ClusterRedisTarget } from "../../src/queue/connection.ts";
import { isCluster } from "../../src/queue/redisClient.ts";
import { isRedisConnectionError, RedisUnavailableError, waitForRedis } from "../../src/queue/redisWait.ts";
import { freePort } from "../helpers/metrics.ts";

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("no ConfigError");
}

const cluster = (url: string, nodes = [{ host: "127.0.0.1", port: 7000 }]): ClusterRedisTarget => ({ mode: "cluster", url, nodes });

describe("cluster settings", () => {
  test("a host:port list makes a cluster target with REDIS_URL for the credentials (IPv6 in brackets, blanks dropped)", () => {
    const config = loadConfig({ AGENTQ_REDIS_CLUSTER_NODES: " n1.internal:7000, 10.0.0.2:7001 ,[fd00::3]:7002,", REDIS_URL: "redis://:pw@ignored:1" });
    const nodes = [
      { host: "n1.internal", port: 7000 },
      { host: "10.0.0.2", port: 7001 },
      { host: "fd00::3", port: 7002 },
    ];
    expect(config.redisClusterNodes).toEqual(nodes);
    expect(redisTargetOf(config)).toEqual({ mode: "cluster", url: "redis://:pw@ignored:1", nodes });
    expect(describeRedisTarget(redisTargetOf(config))).toBe("cluster via n1.internal:7000,10.0.0.2:7001,[fd00::3]:7002");
    expect(loadConfig({}).redisClusterNodes).toEqual([]);
  });

  test("refused at start with the variable named: a bad entry, an empty list, Sentinel together with Cluster, a database other than 0", () => {
    expect(problemsOf({ AGENTQ_REDIS_CLUSTER_NODES: "n1:7000,n2" })).toEqual([
      'AGENTQ_REDIS_CLUSTER_NODES: "n2" is not host:port (a port from 1 to 65535) (got "n1:7000,n2")',
    ]);
    expect(problemsOf({ AGENTQ_REDIS_CLUSTER_NODES: " , " })).toEqual(['AGENTQ_REDIS_CLUSTER_NODES: no host:port in the list (got " , ")']);
    expect(problemsOf({ AGENTQ_REDIS_CLUSTER_NODES: "n1:7000", AGENTQ_REDIS_SENTINELS: "s1:26379", AGENTQ_REDIS_SENTINEL_NAME: "m" })).toEqual([
      "AGENTQ_REDIS_CLUSTER_NODES: set together with AGENTQ_REDIS_SENTINELS; choose one (a cluster fails over by itself, without sentinels)",
    ]);
    expect(problemsOf({ AGENTQ_REDIS_CLUSTER_NODES: "n1:7000", REDIS_URL: "redis://n1:7000/2" })).toEqual([
      'REDIS_URL: names database "2", but Redis Cluster has database 0 only (with AGENTQ_REDIS_CLUSTER_NODES, REDIS_URL gives only the credentials and the scheme)',
    ]);
    // Database 0, written or not, is fine.
    expect(loadConfig({ AGENTQ_REDIS_CLUSTER_NODES: "n1:7000", REDIS_URL: "redis://n1:7000/0" }).redisClusterNodes.length).toBe(1);
    expect(loadConfig({ AGENTQ_REDIS_CLUSTER_NODES: "n1:7000", REDIS_URL: "redis://n1:7000" }).redisClusterNodes.length).toBe(1);
  });
});

describe("cluster connections", () => {
  test("a Cluster client: REDIS_URL's user, password and TLS go to every node; the caller's options where Cluster reads them", () => {
    const redis = openRedis(cluster("rediss://agent%40q:p%3Ass@ignored:1"), {
      lazyConnect: true,
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectionName: "agentq-x",
      retryStrategy: () => null,
    });
    try {
      expect(redis).toBeInstanceOf(Cluster);
      expect(isCluster(redis)).toBe(true);
      const options = (redis as Cluster).options;
      expect(options).toMatchObject({ lazyConnect: true, enableAutoPipelining: true, enableOfflineQueue: false });
      expect(options.redisOptions).toMatchObject({ username: "agent@q", password: "p:ss", tls: {}, maxRetriesPerRequest: 1, connectionName: "agentq-x" });
      // A caller that gives up reconnecting (the start-up probe) makes the cluster give up too.
      expect(options.clusterRetryStrategy!(1)).toBeNull();
    } finally {
      redis.disconnect();
    }
  });

  test("no credentials in REDIS_URL: none sent; an unset caller option keeps Cluster's default", () => {
    const redis = openRedis(cluster("redis://ignored:1"), { lazyConnect: true }) as Cluster;
    try {
      expect(redis.options.redisOptions?.password).toBeUndefined();
      expect(redis.options.redisOptions?.tls).toBeUndefined();
      // Cluster's own default (true), not an explicit undefined from the split.
      expect(redis.options.enableOfflineQueue).toBe(true);
    } finally {
      redis.disconnect();
    }
  });

  test("duplicateRedis: a cluster's copy is a Cluster to the same nodes with the credentials kept and the copy's own options; a single server's a Redis", () => {
    const original = openRedis(cluster("redis://:secret@ignored:1", [{ host: "127.0.0.1", port: 7100 }]), { lazyConnect: true, maxRetriesPerRequest: 3 });
    const copy = duplicateRedis(original, { lazyConnect: true, enableAutoPipelining: false, maxRetriesPerRequest: null, autoResubscribe: false }) as Cluster;
    const single = openRedis({ mode: "single", url: "redis://127.0.0.1:1/0" }, { lazyConnect: true });
    const singleCopy = duplicateRedis(single, { lazyConnect: true, connectionName: "copy" });
    try {
      expect(isCluster(copy)).toBe(true);
      expect(copy.options.enableAutoPipelining).toBe(false);
      expect(copy.options.redisOptions).toMatchObject({ password: "secret", maxRetriesPerRequest: null, autoResubscribe: false });
      expect(isCluster(singleCopy)).toBe(false);
      expect((singleCopy as typeof single).options.connectionName).toBe("copy");
    } finally {
      for (const r of [original, copy, single, singleCopy]) r.disconnect();
    }
  });

  test("the start-up wait gives up on a cluster none of whose nodes answers, with RedisUnavailableError", async () => {
    const target = cluster("redis://ignored:1", [{ host: "127.0.0.1", port: freePort() }]);
    const error = await waitForRedis(target).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RedisUnavailableError);
    expect(isRedisConnectionError(new Error("None of startup nodes is available"))).toBe(true);
    expect(isRedisConnectionError(new Error("CLUSTERDOWN The cluster is down"))).toBe(true);
    expect(isRedisConnectionError(new Error("WRONGTYPE Operation against a key"))).toBe(false);
  });
});
