import { afterAll, beforeAll, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

test("healthz answers without a key", async () => {
  const res = await ctx.request("GET", "/healthz", { anonymous: true });
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ status: "ok" });
});

test("readyz reports PostgreSQL and Redis reachable", async () => {
  const res = await ctx.request("GET", "/readyz", { anonymous: true });
  expect(res.status).toBe(200);
  expect(res.body.checks.postgres.ok).toBe(true);
  expect(res.body.checks.redis.ok).toBe(true);
});
