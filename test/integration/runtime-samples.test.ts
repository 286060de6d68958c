/**
 * Run-time samples for the completion estimates (src/queue/runtimeSamples.ts), on a real
 * Redis: a burst of samples waits out one window and goes in one pipeline, newest first;
 * settled() writes at once what still waits; Redis keeps only the newest RUNTIME_SAMPLES.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { queueKeys, type QueueKeys } from "../../src/queue/keys.ts";
import { RUNTIME_SAMPLES, RuntimeSamples } from "../../src/queue/runtimeSamples.ts";

let ctx: TestContext;
let keys: QueueKeys;

beforeAll(async () => {
  ctx = await createTestContext();
  keys = queueKeys(ctx.config.redisPrefix);
});
afterAll(() => ctx.close());

const stored = async () => (await ctx.redis.lrange(keys.runtimes, 0, -1)).map(Number);

describe("RuntimeSamples", () => {
  test("a burst of samples waits out the window and goes out in one pipeline, newest first", async () => {
    await ctx.redis.del(keys.runtimes);
    const samples = new RuntimeSamples(ctx.redis, keys, 100);
    for (let ms = 1; ms <= 50; ms++) samples.add(ms);
    // Nothing is written before the window ends: the first sample waits for the others.
    await ctx.redis.ping();
    expect(await stored()).toEqual([]);
    const list = await eventually(async () => {
      const l = await stored();
      return l.length === 50 ? l : undefined;
    });
    expect(list).toEqual(Array.from({ length: 50 }, (_, i) => 50 - i));
    expect(samples.writes).toBe(1);
  });

  test("settled() writes what waits at once; a later sample waits for a window of its own", async () => {
    await ctx.redis.del(keys.runtimes);
    const samples = new RuntimeSamples(ctx.redis, keys, 60_000);
    samples.add(7.4);
    await samples.settled();
    expect(await stored()).toEqual([7]);
    expect(samples.writes).toBe(1);
    samples.add(9);
    await ctx.redis.ping();
    expect(samples.writes).toBe(1);
    await samples.settled();
    expect(await stored()).toEqual([9, 7]);
    expect(samples.writes).toBe(2);
  });

  test(`Redis keeps the newest ${RUNTIME_SAMPLES}, and so does the process while samples wait`, async () => {
    await ctx.redis.del(keys.runtimes);
    const samples = new RuntimeSamples(ctx.redis, keys, 60_000);
    for (let ms = 1; ms <= RUNTIME_SAMPLES + 50; ms++) samples.add(ms);
    await samples.settled();
    const list = await stored();
    expect(list.length).toBe(RUNTIME_SAMPLES);
    expect(list[0]).toBe(RUNTIME_SAMPLES + 50);
    expect(list.at(-1)).toBe(51);
  });

  test("a sample Redis cannot take is dropped, not thrown", async () => {
    // Nothing listens on port 1: the pipeline is refused at once.
    const broken = new Redis("redis://127.0.0.1:1", { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    broken.on("error", () => {});
    const samples = new RuntimeSamples(broken, keys, 10);
    samples.add(5);
    await samples.settled();
    expect(samples.writes).toBe(1);
    broken.disconnect();
  });
});
