/**
 * Sentinel mode of the connection factory (src/queue/connection.ts) in the test process, against
 * a real primary, replica and three sentinels (test/helpers/redisSentinel.ts), with passwords on
 * the servers and on the sentinels: the connection reaches the primary the sentinels announce,
 * the start-up wait goes through the sentinels, and after the primary is SIGKILLed a command
 * connection, a blocking pop and a subscriber all come back on the promoted replica by themselves.
 */
import { afterEach, expect, test } from "bun:test";
import type Redis from "ioredis";
import { loadConfig } from "../../src/config.ts";
import { openRedis, redisTargetOf, type RedisTarget } from "../../src/queue/connection.ts";
import { RedisUnavailableError, waitForRedis } from "../../src/queue/redisWait.ts";
import { eventually } from "../helpers/engine.ts";
import { redisSentinelSuite } from "../helpers/redisSentinel.ts";

const deployment = redisSentinelSuite({ name: "agentq-it", password: "primary-secret", sentinelPassword: "sentinel-secret" });
const opened: Redis[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.disconnect();
});

function target(): RedisTarget {
  const d = deployment();
  return redisTargetOf(
    loadConfig({
      REDIS_URL: d.redisUrl,
      AGENTQ_REDIS_SENTINELS: d.sentinelList,
      AGENTQ_REDIS_SENTINEL_NAME: d.name,
      AGENTQ_REDIS_SENTINEL_PASSWORD: "sentinel-secret",
    }),
  );
}

function open(t: RedisTarget, options: Parameters<typeof openRedis>[1] = {}): Redis {
  // Every target of this file is a sentinel one: a Redis, never a Cluster.
  const r = openRedis(t, options) as Redis;
  r.on("error", () => {});
  opened.push(r);
  return r;
}

test("the target names the sentinels and the primary; a connection reaches the announced primary with REDIS_URL's password", async () => {
  const t = target();
  expect(t).toEqual({ mode: "sentinel", url: deployment().redisUrl, sentinels: deployment().sentinels, name: "agentq-it", sentinelPassword: "sentinel-secret" });
  const redis = open(t, { maxRetriesPerRequest: 1 });
  await redis.set("agentq-it:probe", "1");
  expect(await redis.get("agentq-it:probe")).toBe("1");
  const [role] = (await redis.call("ROLE")) as [string];
  expect(role).toBe("master");
  // REDIS_URL says port 1: the connection went where the sentinels said.
  expect(Number((await redis.info("server")).match(/tcp_port:(\d+)/)![1])).toBe(deployment().primary.port);
});

test("the start-up wait goes through the sentinels; an unknown primary name, or a wrong sentinel password, is not answered", async () => {
  await waitForRedis(target());
  const unknown = { ...target(), name: "no-such-primary" } as RedisTarget;
  await expect(waitForRedis(unknown)).rejects.toBeInstanceOf(RedisUnavailableError);
  const wrongPassword = { ...target(), sentinelPassword: "wrong" } as RedisTarget;
  await expect(waitForRedis(wrongPassword)).rejects.toBeInstanceOf(RedisUnavailableError);
});

test("after the primary is SIGKILLed, commands, a blocking pop and a subscriber all reach the promoted replica by themselves", async () => {
  const d = deployment();
  const t = target();
  const commands = open(t, { maxRetriesPerRequest: null });
  const blocking = open(t, { maxRetriesPerRequest: null });
  const subscriber = open(t, { maxRetriesPerRequest: null });
  const heard: string[] = [];
  subscriber.on("message", (_channel, message) => heard.push(message));
  await subscriber.subscribe("agentq-it:events");
  // Waiting in BZPOPMIN on the old primary when it dies: ioredis resends it to the new one.
  const popped = blocking.bzpopmin("agentq-it:queue", 0);
  await eventually(async () => (String(await commands.client("LIST")).includes("cmd=bzpopmin") ? true : undefined), 5_000, "the blocking pop to wait");

  await d.killPrimary();
  await eventually(async () => ((await d.announcedPrimary()).port === d.replica.port ? true : undefined), 30_000, "the sentinels to promote the replica");

  // Commands wait in ioredis's offline queue until the connection is back on the new primary.
  await commands.zadd("agentq-it:queue", 1, "task-after-failover");
  expect(await popped).toEqual(["agentq-it:queue", "task-after-failover", "1"]);
  await eventually(
    async () => {
      await commands.publish("agentq-it:events", "after-failover");
      return heard.includes("after-failover") ? true : undefined;
    },
    15_000,
    "the subscriber to hear a message published on the new primary",
  );
  const [role] = (await commands.call("ROLE")) as [string];
  expect(role).toBe("master");
  expect(Number((await commands.info("server")).match(/tcp_port:(\d+)/)![1])).toBe(d.replica.port);
}, 60_000);
