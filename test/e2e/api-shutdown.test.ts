/**
 * `bun run api` stops within a bound whatever its clients, Redis and PostgreSQL do (issue 11,
 * item 1): SIGTERM with a live-events stream open ends the stream and exits 0 at once; with
 * Redis and PostgreSQL both unreachable (TCP relays the test closes, test/helpers/relay.ts)
 * and a stream open, it still exits 0 within the drain deadline plus the grace period plus a
 * small constant.
 */
import { afterEach, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import type { TestContext } from "../helpers/app.ts";
import { TEST_API_KEY } from "../helpers/app.ts";
import { eventually, FAST_ENGINE } from "../helpers/engine.ts";
import { freePort } from "../helpers/metrics.ts";
import { relayTo, type Relay } from "../helpers/relay.ts";
import { SseClient } from "../helpers/sse.ts";
import { SHUTDOWN_MARGIN_MS } from "../../src/cli/run.ts";
import { e2eSuite } from "./support.ts";

let ctx: TestContext;
e2eSuite((c) => (ctx = c));

const SHUTDOWN_BOUND_MS = FAST_ENGINE.drainDeadlineMs! + FAST_ENGINE.cancelGraceMs! + SHUTDOWN_MARGIN_MS;

const relays: Relay[] = [];
const apis: Subprocess[] = [];
afterEach(async () => {
  for (const p of apis.splice(0)) p.kill("SIGKILL");
  await Promise.all(relays.splice(0).map((r) => r.down()));
});

/** An API process whose PostgreSQL and Redis are reached through relays the test controls. */
async function startApi() {
  const pg = relayTo(ctx.config.databaseUrl);
  const redis = relayTo(ctx.config.redisUrl);
  relays.push(pg, redis);
  await Promise.all([pg.up(), redis.up()]);
  const port = freePort();
  const proc = Bun.spawn(["bun", new URL("../../src/cli/api.ts", import.meta.url).pathname], {
    env: {
      ...(process.env as Record<string, string>),
      DATABASE_URL: pg.urlFor(ctx.config.databaseUrl),
      REDIS_URL: redis.urlFor(ctx.config.redisUrl),
      AGENTQ_REDIS_PREFIX: ctx.config.redisPrefix,
      AGENTQ_API_KEYS: TEST_API_KEY,
      HOST: "127.0.0.1",
      PORT: String(port),
      AGENTQ_DRAIN_DEADLINE_MS: String(FAST_ENGINE.drainDeadlineMs),
      AGENTQ_CANCEL_GRACE_MS: String(FAST_ENGINE.cancelGraceMs),
      LOG_LEVEL: "warn",
    },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "inherit",
  });
  apis.push(proc);
  const base = `http://127.0.0.1:${port}`;
  await eventually(async () => ((await fetch(`${base}/readyz`).catch(() => null))?.status === 200 ? true : undefined), 15_000, "the API to be ready");
  const stream = await SseClient.open(`${base}/api/v1/events`);
  expect(stream.status).toBe(200);
  return { proc, pg, redis, stream };
}

async function stopWithin(proc: Subprocess, ms: number): Promise<{ code: number | null; elapsedMs: number }> {
  const start = performance.now();
  proc.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the API still runs ${ms} ms after SIGTERM`)), ms)));
  try {
    const code = await Promise.race([proc.exited, late]);
    return { code, elapsedMs: performance.now() - start };
  } finally {
    clearTimeout(timer);
  }
}

test("SIGTERM with a live-events stream open: the stream ends and the API exits 0 at once", async () => {
  const { proc, stream } = await startApi();
  const { code, elapsedMs } = await stopWithin(proc, SHUTDOWN_BOUND_MS + 5_000);
  expect(code).toBe(0);
  expect(elapsedMs).toBeLessThan(SHUTDOWN_BOUND_MS);
  await stream.done;
  expect(stream.ended).toBe(true);
}, 30_000);

test("SIGTERM while Redis and PostgreSQL are both unreachable, a stream open: exit 0 within the drain deadline plus the grace period", async () => {
  const { proc, pg, redis, stream } = await startApi();
  await Promise.all([pg.down(), redis.down()]);
  const { code, elapsedMs } = await stopWithin(proc, SHUTDOWN_BOUND_MS + 5_000);
  expect(code).toBe(0);
  expect(elapsedMs).toBeLessThan(SHUTDOWN_BOUND_MS);
  await stream.done;
}, 30_000);
