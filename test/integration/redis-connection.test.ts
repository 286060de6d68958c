/** The one Redis connection factory (src/queue/connection.ts), against the real Redis. */
import { expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { TEST_REDIS_URL } from "../helpers/app.ts";
import { describeRedisTarget, openRedis, redisTargetOf } from "../../src/queue/connection.ts";
import { DEFAULTS, loadConfig } from "../../src/config.ts";

test("single mode: the target is REDIS_URL; the connection reaches it with the caller's own options", async () => {
  const target = redisTargetOf(loadConfig({}, { redisUrl: TEST_REDIS_URL }));
  expect(target).toEqual({ mode: "single", url: TEST_REDIS_URL });
  const name = `agentq-test-${randomBytes(4).toString("hex")}`;
  const redis = openRedis(target, { connectionName: name, maxRetriesPerRequest: 1 });
  try {
    expect(await redis.ping()).toBe("PONG");
    expect(await redis.client("GETNAME")).toBe(name);
  } finally {
    redis.disconnect();
  }
});

test("the target is plain data: it survives structured cloning (the worker threads' init message)", () => {
  const target = redisTargetOf(DEFAULTS);
  expect(structuredClone(target)).toEqual(target);
});

test("a target's description for logs hides the password", () => {
  expect(describeRedisTarget({ mode: "single", url: "redis://agentq:s3cret@redis.internal:6380/2" })).toBe("redis://agentq:***@redis.internal:6380/2");
  expect(describeRedisTarget({ mode: "single", url: "redis://127.0.0.1:6379/0" })).toBe("redis://127.0.0.1:6379/0");
});
