/** The API key revocation bus (src/queue/keyRevocations.ts) on a real Redis: what arrives, what is malformed, what a lost connection means. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Logger } from "pino";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { KeyRevocations, parseRevocation } from "../../src/queue/keyRevocations.ts";
import { queueKeys } from "../../src/queue/keys.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

const ID = "0b8a3c2e-1d4f-4a6b-9c7d-5e3f2a1b0c9d";

/** A logger that keeps its warnings. */
function warnings() {
  const seen: string[] = [];
  const logger = { warn: (...args: unknown[]) => void seen.push(String(args.find((a) => typeof a === "string"))) } as unknown as Logger;
  return { seen, logger };
}

test("a message is a JSON array of key ids; anything else is null (the caller forgets every cached key)", () => {
  expect(parseRevocation(JSON.stringify([ID.toUpperCase()]))).toEqual([ID]);
  expect(parseRevocation("not json")).toBeNull();
  expect(parseRevocation(JSON.stringify(["not-a-key-id"]))).toBeNull();
  expect(parseRevocation(JSON.stringify({ ids: [ID] }))).toBeNull();
});

test("a malformed message on the channel resets every listener and is logged; a well-formed one revokes its ids", async () => {
  const { seen, logger } = warnings();
  const bus = new KeyRevocations(ctx.redis, queueKeys(ctx.config.redisPrefix), logger);
  try {
    const revoked: string[][] = [];
    let resets = 0;
    let afterReady: () => void = () => {};
    const reset = new Promise<void>((resolve) => (afterReady = resolve));
    bus.listen({ revoked: (ids) => void revoked.push([...ids]), reset: () => (resets++, resets === 2 && afterReady()) });
    await bus.ready(); // the first reset: the subscription started
    await ctx.redis.publish(queueKeys(ctx.config.redisPrefix).apiKeyRevokedChannel, "{broken");
    await reset;
    expect(seen).toContain("malformed API key revocation; forgetting every cached key");
    const arrived = new Promise<void>((resolve) => bus.listen({ revoked: () => resolve(), reset: () => {} }));
    await ctx.redis.publish(queueKeys(ctx.config.redisPrefix).apiKeyRevokedChannel, JSON.stringify([ID]));
    await arrived;
    expect(revoked).toEqual([[ID]]);
  } finally {
    bus.close();
  }
});

test("losing the subscriber's connection is logged: revocations are not heard until it is back", async () => {
  const { seen, logger } = warnings();
  const bus = new KeyRevocations(ctx.redis, queueKeys(ctx.config.redisPrefix), logger);
  try {
    let resets = 0;
    let back: () => void = () => {};
    const resubscribed = new Promise<void>((resolve) => (back = resolve));
    bus.listen({ revoked: () => {}, reset: () => (++resets === 2 ? back() : undefined) });
    await bus.ready();
    const stream = (bus.connection as unknown as { stream: { localAddress: string; localPort: number } }).stream;
    await ctx.redis.client("KILL", "ADDR", `${stream.localAddress}:${stream.localPort}`);
    await resubscribed;
    expect(seen).toContain(
      "API key revocations are not received while Redis is unreachable; cached keys expire by AGENTQ_API_KEY_CACHE_TTL_MS",
    );
    expect(bus.live).toBe(true);
  } finally {
    bus.close();
  }
  expect(() => bus.listen({ revoked: () => {}, reset: () => {} })).toThrow("closed");
});
