/** Waiting for Redis at start (src/queue/redisWait.ts), in the test process, through a relay that is down, then up. */
import { expect, test } from "bun:test";
import { Relay } from "../helpers/relay.ts";
import { TEST_REDIS_URL } from "../helpers/app.ts";
import { isRedisConnectionError, RedisUnavailableError, waitForRedis } from "../../src/queue/redisWait.ts";

const single = (url: string) => ({ mode: "single" as const, url });

const target = () => {
  const u = new URL(TEST_REDIS_URL);
  return { host: u.hostname, port: Number(u.port || 6379) };
};

test("waits with backoff while Redis refuses connections, telling each retry, and resolves once it answers", async () => {
  const relay = new Relay(target());
  const retries: number[] = [];
  let opened = false;
  const waiting = waitForRedis(single(relay.urlFor(TEST_REDIS_URL)), {
    waitMs: 10_000,
    onRetry: (error, retryInMs) => {
      expect(isRedisConnectionError(error)).toBe(true);
      retries.push(retryInMs);
      // Redis comes up during the second wait.
      if (retries.length === 2 && !opened) {
        opened = true;
        void relay.up();
      }
    },
  });
  try {
    await waiting;
    expect(retries.length).toBeGreaterThanOrEqual(2);
    expect(retries[1]!).toBeGreaterThan(retries[0]!);
  } finally {
    await relay.down();
  }
});

test("gives up once the wait is over with RedisUnavailableError; without a wait, after one try", async () => {
  const relay = new Relay(target());
  await expect(waitForRedis(single(relay.urlFor(TEST_REDIS_URL)), { waitMs: 600 })).rejects.toBeInstanceOf(RedisUnavailableError);
  const once = await waitForRedis(single(relay.urlFor(TEST_REDIS_URL))).catch((e: unknown) => e);
  expect(once).toBeInstanceOf(RedisUnavailableError);
  expect((once as RedisUnavailableError).message.length).toBeGreaterThan(0);
});

test("what counts as a connection error worth waiting for", () => {
  expect(isRedisConnectionError(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))).toBe(true);
  expect(isRedisConnectionError(new Error("LOADING Redis is loading the dataset in memory"))).toBe(true);
  expect(isRedisConnectionError(new Error("Connection is closed."))).toBe(true);
  expect(isRedisConnectionError(new Error("WRONGPASS invalid username-password pair"))).toBe(false);
  expect(isRedisConnectionError(null)).toBe(false);
});
