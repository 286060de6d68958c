/**
 * Redis and PostgreSQL outages around a supervisor process (issue 11, item 1): the process's
 * REDIS_URL / DATABASE_URL point at a TCP relay the test closes (test/helpers/relay.ts); the
 * shared servers are never touched.
 *  - started while Redis is down, it waits (with backoff, logged) and runs tasks once it is up;
 *  - a Redis outage mid-run ends no process, and tasks complete after it;
 *  - SIGTERM while Redis is down, or while PostgreSQL is down, exits 0 within the drain
 *    deadline plus the grace period plus a small constant.
 */
import { afterEach, beforeAll, expect, test } from "bun:test";
import type { TestContext } from "../helpers/app.ts";
import { FAST_ENGINE, eventually, spawnSupervisor, type SupervisorProcess } from "../helpers/engine.ts";
import { relayTo, type Relay } from "../helpers/relay.ts";
import { SHUTDOWN_MARGIN_MS } from "../../src/cli/run.ts";
import { createCorpus, e2eSuite, enqueue, exitWithin, loadTasks, waitAllTerminal, type Corpus } from "./support.ts";

let ctx: TestContext;
let corpus: Corpus;
const children = e2eSuite((c) => (ctx = c));
beforeAll(async () => {
  corpus = await createCorpus(ctx);
});
const relays: Relay[] = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.down()));
});

/** What the stopped process may take at most: the drain deadline, the grace period, and a small constant. */
const SHUTDOWN_BOUND_MS = FAST_ENGINE.drainDeadlineMs! + FAST_ENGINE.cancelGraceMs! + SHUTDOWN_MARGIN_MS;

function logLines() {
  const lines: Record<string, unknown>[] = [];
  let partial = "";
  const waiters = new Set<{ match: (l: Record<string, unknown>) => boolean; resolve: () => void }>();
  return {
    lines,
    reader: (text: string) => {
      partial += text;
      const parts = partial.split("\n");
      partial = parts.pop()!;
      for (const raw of parts) {
        if (!raw.startsWith("{")) continue;
        const line = JSON.parse(raw) as Record<string, unknown>;
        lines.push(line);
        for (const w of waiters) if (w.match(line)) (waiters.delete(w), w.resolve());
      }
    },
    until(match: (l: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<void> {
      if (lines.some(match)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no such log line")), timeoutMs);
        waiters.add({ match, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
  };
}

async function redisRelay(): Promise<Relay> {
  const relay = relayTo(ctx.config.redisUrl);
  relays.push(relay);
  return relay;
}

async function runningOn(p: SupervisorProcess): Promise<string[]> {
  const tasks = await loadTasks(ctx);
  return [...tasks.values()].filter((t) => t.status === "running" && t.lease_owner?.startsWith(`${p.id}-`)).map((t) => t.task_id);
}

test("started while Redis is down: it waits with backoff (logged), then runs tasks once Redis is up", async () => {
  const relay = await redisRelay();
  const log = logLines();
  const starting = spawnSupervisor(ctx, {
    workers: 1,
    fixture: "scripted",
    env: { REDIS_URL: relay.urlFor(ctx.config.redisUrl), AGENTQ_STARTUP_WAIT_MS: "20000" },
    onStdout: log.reader,
  });
  let exitedEarly: number | undefined;
  await log.until((l) => l.msg === "Redis is not answering yet; waiting" && log.lines.filter((x) => x.msg === l.msg).length >= 2);
  const waits = log.lines.filter((l) => l.msg === "Redis is not answering yet; waiting").map((l) => l.retry_in_ms as number);
  expect(waits[1]!).toBeGreaterThan(waits[0]!);
  await relay.up();
  const sup = children.track(await starting);
  void sup.exited.then((code) => (exitedEarly = code));
  const id = await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 50 }));
  expect((await waitAllTerminal(ctx, [id], 15_000)).get(id)!.status).toBe("completed");
  expect(exitedEarly).toBeUndefined();
  sup.proc.kill("SIGTERM");
  expect((await exitWithin(sup, SHUTDOWN_BOUND_MS)).code).toBe(0);
}, 30_000);

test("Redis never comes up within AGENTQ_STARTUP_WAIT_MS: exit 69 with one line", async () => {
  const relay = await redisRelay();
  const proc = Bun.spawn(["bun", new URL("../../src/cli/supervisor.ts", import.meta.url).pathname], {
    env: {
      ...(process.env as Record<string, string>),
      DATABASE_URL: ctx.config.databaseUrl,
      REDIS_URL: relay.urlFor(ctx.config.redisUrl),
      AGENTQ_REDIS_PREFIX: ctx.config.redisPrefix,
      WORKERS: "1",
      LOG_LEVEL: "warn",
      AGENTQ_STARTUP_WAIT_MS: "1500",
      AGENTQ_SUPERVISOR_METRICS_PORT: "0",
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const start = performance.now();
  const code = await proc.exited;
  expect(code).toBe(69);
  expect(performance.now() - start).toBeLessThan(10_000);
  const stderr = (await new Response(proc.stderr).text()).trim();
  expect(stderr.split("\n")).toHaveLength(1);
  expect(stderr).toContain("Redis is not answering");
  const waits = (await new Response(proc.stdout).text()).split("\n").filter((l) => l.includes("Redis is not answering yet; waiting"));
  expect(waits.length).toBeGreaterThan(0);
}, 20_000);

test("a Redis outage mid-run ends no process: tasks running through it and enqueued during it complete after it", async () => {
  const relay = await redisRelay();
  await relay.up();
  const sup = children.track(
    await spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: { REDIS_URL: relay.urlFor(ctx.config.redisUrl) } }),
  );
  let exited: number | undefined;
  void sup.exited.then((code) => (exited = code));
  const before = [];
  for (let i = 0; i < 2; i++) before.push(await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 1500 })));
  await eventually(async () => ((await runningOn(sup)).length === 2 ? true : undefined), 10_000, "both tasks running");
  await relay.down();
  // Long enough for every Redis caller to fail (ioredis gives up on a command after 3 retries).
  const during = [];
  for (let i = 0; i < 3; i++) during.push(await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 100 })));
  await waitAllTerminal(ctx, before, 15_000);
  await Bun.sleep(0);
  expect(exited).toBeUndefined();
  await relay.up();
  const final = await waitAllTerminal(ctx, [...before, ...during], 20_000);
  for (const id of [...before, ...during]) expect({ id, status: final.get(id)!.status }).toEqual({ id, status: "completed" });
  expect(exited).toBeUndefined();
  sup.proc.kill("SIGTERM");
  expect((await exitWithin(sup, SHUTDOWN_BOUND_MS)).code).toBe(0);
}, 30_000);

test("SIGTERM while Redis is down: the process exits 0 within the drain deadline plus the grace period", async () => {
  const relay = await redisRelay();
  await relay.up();
  const sup = children.track(
    await spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: { REDIS_URL: relay.urlFor(ctx.config.redisUrl) } }),
  );
  const ids = [];
  for (let i = 0; i < 2; i++) ids.push(await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 20_000 })));
  await eventually(async () => ((await runningOn(sup)).length === 2 ? true : undefined), 10_000, "both tasks running");
  await relay.down();
  sup.proc.kill("SIGTERM");
  const { code, elapsedMs } = await exitWithin(sup, SHUTDOWN_BOUND_MS + 5_000);
  expect(code).toBe(0);
  expect(elapsedMs).toBeLessThan(SHUTDOWN_BOUND_MS);
  // Handed back in PostgreSQL (it was up); Redis did not hear of it: the reconciler re-dispatches.
  const after = await loadTasks(ctx);
  for (const id of ids) expect(after.get(id)!.status).toBe("pending");
}, 30_000);

test("SIGTERM while PostgreSQL is down: the process exits 0 within the drain deadline plus the grace period; the leases and the reconciler take over", async () => {
  const relay = relayTo(ctx.config.databaseUrl);
  relays.push(relay);
  await relay.up();
  const sup = children.track(
    await spawnSupervisor(ctx, { workers: 2, fixture: "scripted", env: { DATABASE_URL: relay.urlFor(ctx.config.databaseUrl) } }),
  );
  const ids = [];
  for (let i = 0; i < 2; i++) ids.push(await enqueue(ctx, await corpus.agent({ mode: "slow", ms: 20_000 })));
  await eventually(async () => ((await runningOn(sup)).length === 2 ? true : undefined), 10_000, "both tasks running");
  await relay.down();
  sup.proc.kill("SIGTERM");
  const { code, elapsedMs } = await exitWithin(sup, SHUTDOWN_BOUND_MS + 10_000);
  expect(code).toBe(0);
  expect(elapsedMs).toBeLessThan(SHUTDOWN_BOUND_MS);
}, 40_000);
