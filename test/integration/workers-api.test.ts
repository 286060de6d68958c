/**
 * GET /api/v1/workers: the live supervisors from their capacity heartbeats in Redis, with a
 * real engine in the test process and hand-written entries for the edge cases.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { startTestEngine } from "../helpers/engine.ts";
import { eventually } from "../helpers/engine.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { readCapacity } from "../../src/queue/capacity.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ leaseMs: 600 });
});
afterAll(() => ctx.close());

test("lists a running supervisor with its task slots, and none once it stopped", async () => {
  expect((await ctx.request("GET", "workers")).body).toMatchObject({ supervisors: [], task_slots: 0, busy: 0 });
  const engine = await startTestEngine(ctx, { workers: 2, concurrency: 3 });
  try {
    const res = await eventually(async () => {
      const r = await ctx.request("GET", "workers");
      return r.body.supervisors.length === 1 ? r : undefined;
    }, 5000, "the supervisor's heartbeat");
    expect(res.status).toBe(200);
    expect(res.body.task_slots).toBe(6);
    expect(res.body.busy).toBe(0);
    expect(res.body.supervisors[0]).toMatchObject({ supervisor_id: engine.supervisor.id, task_slots: 6, busy: 0 });
    expect(Date.parse(res.body.supervisors[0].heartbeat_expires_at)).toBeGreaterThan(Date.now());
  } finally {
    await engine.stop();
  }
  // A stopped supervisor withdraws its entry.
  expect((await ctx.request("GET", "workers")).body.supervisors).toEqual([]);
});

test("lapsed and malformed heartbeats are left out; the rest are summed, ordered by id", async () => {
  const keys = queueKeys(ctx.config.redisPrefix);
  const now = Date.now();
  await ctx.redis.hset(keys.capacity, {
    "sup-b": JSON.stringify({ workers: 4, busy: 1, expires: now + 60_000 }),
    "sup-a": JSON.stringify({ workers: 8, busy: 8, expires: now + 60_000 }),
    "sup-dead": JSON.stringify({ workers: 16, busy: 3, expires: now - 1 }),
    "sup-junk": "not json",
    "sup-partial": JSON.stringify({ workers: 2 }),
  });
  const live = await readCapacity(ctx.redis, keys, now);
  expect(live.map((s) => s.supervisorId)).toEqual(["sup-a", "sup-b"]);
  const res = await ctx.request("GET", "workers");
  expect(res.body).toMatchObject({ task_slots: 12, busy: 9 });
  expect(res.body.supervisors.map((s: { supervisor_id: string }) => s.supervisor_id)).toEqual(["sup-a", "sup-b"]);
  await ctx.redis.del(keys.capacity);
});

test("needs an API key like every /api/v1 route", async () => {
  expect((await ctx.request("GET", "workers", { anonymous: true })).status).toBe(401);
});
