/**
 * Engine helpers: an in-process supervisor + reconciler over a test context's
 * database and Redis prefix, supervisor child processes, and waiting on task
 * states without sleeping blindly.
 */
import Redis from "ioredis";
import type { Subprocess } from "bun";
import { sql } from "drizzle-orm";
import type { Config } from "../../src/config.ts";
import type { Supervisor, SupervisorEvent } from "../../src/supervisor/supervisor.ts";
import type { Reconciler } from "../../src/supervisor/reconciler.ts";
import { startEngine } from "../../src/supervisor/engine.ts";
import type { TestContext } from "./app.ts";

/** Engine settings that make failure tests fast (short leases, grace and reconcile periods). */
export const FAST_ENGINE: Partial<Config> = {
  leaseMs: 1500,
  cancelGraceMs: 300,
  reconcileEveryMs: 200,
  stalePendingMs: 300,
  drainDeadlineMs: 3000,
  restartMax: 50,
  restartWindowMs: 60_000,
};

export interface TestEngine {
  supervisor: Supervisor;
  reconciler: Reconciler;
  events: SupervisorEvent[];
  /** Resolves with the first event matching `predicate` (past or future). */
  waitForEvent(predicate: (e: SupervisorEvent) => boolean, timeoutMs?: number): Promise<SupervisorEvent>;
  stop(): Promise<void>;
}

export async function startTestEngine(
  ctx: TestContext,
  options: {
    workers: number;
    concurrency?: number;
    workerUrl?: string;
    reconcile?: boolean;
    /** Run the engine's scheduler (default true, as in production). */
    schedule?: boolean;
    config?: Partial<Config>;
    onFatal?: (e: Error) => void;
  },
): Promise<TestEngine> {
  const config = { ...ctx.config, ...options.config };
  const events: SupervisorEvent[] = [];
  const waiters = new Set<{ predicate: (e: SupervisorEvent) => boolean; resolve: (e: SupervisorEvent) => void }>();
  // The production composition (src/supervisor/engine.ts), over the test context's connections.
  const engine = await startEngine(
    { config, logger: ctx.logger, database: ctx.database, redis: ctx.redis, metrics: ctx.metrics },
    {
      workers: options.workers,
      concurrency: options.concurrency ?? 1,
      workerUrl: options.workerUrl,
      onFatal: options.onFatal,
      reconcile: options.reconcile,
      schedule: options.schedule,
      webhooks: false,
      spawnStaggerMs: 0,
      observe: (e) => {
        events.push(e);
        for (const w of waiters)
          if (w.predicate(e)) {
            waiters.delete(w);
            w.resolve(e);
          }
      },
    },
  );
  const { supervisor, reconciler } = engine;
  return {
    supervisor,
    reconciler,
    events,
    waitForEvent(predicate, timeoutMs = 10_000) {
      const past = events.find(predicate);
      if (past) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const w = { predicate, resolve: (e: SupervisorEvent) => (clearTimeout(timer), resolve(e)) };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no matching supervisor event within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    stop: () => engine.stop(),
  };
}

/**
 * Waits until `check` returns a value (not undefined), re-checking on a short
 * interval: for state that lives in PostgreSQL, written by other threads or
 * processes, where no event reaches the test.
 */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

export async function taskStatus(ctx: TestContext, taskId: string): Promise<string | undefined> {
  const [row] = await ctx.database.db.execute<{ status: string }>(sql`select status from background_tasks where task_id = ${taskId}`);
  return row?.status;
}

export async function waitForStatus(ctx: TestContext, taskId: string, statuses: string[], timeoutMs = 15_000): Promise<string> {
  return eventually(
    async () => {
      const s = await taskStatus(ctx, taskId);
      return s !== undefined && statuses.includes(s) ? s : undefined;
    },
    timeoutMs,
    `task ${taskId} to reach ${statuses.join("|")}`,
  );
}

export interface SupervisorProcess {
  proc: Subprocess<"ignore", "pipe", "inherit">;
  id: string;
  exited: Promise<number>;
}

/** Starts test/fixtures/supervisor-process.ts against the context's database and prefix. */
export async function spawnSupervisor(
  ctx: TestContext,
  options: {
    workers: number;
    fixture?: string;
    env?: Record<string, string>;
    /** Hears everything the child writes on stdout (its JSON log lines), from the start. */
    onStdout?: (text: string) => void;
  },
): Promise<SupervisorProcess> {
  const c = ctx.config;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    DATABASE_URL: c.databaseUrl,
    REDIS_URL: c.redisUrl,
    AGENTQ_REDIS_PREFIX: c.redisPrefix,
    ...(c.redisClusterNodes.length > 0 ? { AGENTQ_REDIS_CLUSTER_NODES: c.redisClusterNodes.map(({ host, port }) => `${host}:${port}`).join(",") } : {}),
    WORKERS: String(options.workers),
    // One task per thread unless a test says otherwise: tests pick victims by thread.
    AGENTQ_WORKER_CONCURRENCY: "1",
    LOG_LEVEL: "warn",
    AGENTQ_LEASE_MS: String(FAST_ENGINE.leaseMs),
    AGENTQ_CANCEL_GRACE_MS: String(FAST_ENGINE.cancelGraceMs),
    AGENTQ_RECONCILE_EVERY_MS: String(FAST_ENGINE.reconcileEveryMs),
    AGENTQ_STALE_PENDING_MS: String(FAST_ENGINE.stalePendingMs),
    AGENTQ_DRAIN_DEADLINE_MS: String(FAST_ENGINE.drainDeadlineMs),
    ...(options.fixture ? { FIXTURE_WORKER: options.fixture } : {}),
    ...options.env,
  };
  const proc = Bun.spawn(["bun", new URL("../fixtures/supervisor-process.ts", import.meta.url).pathname], {
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = proc.stdout.getReader();
  let buffered = "";
  const decoder = new TextDecoder();
  const onStdout = options.onStdout;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`supervisor process exited before READY: ${buffered}`);
    const text = decoder.decode(value, { stream: true });
    buffered += text;
    onStdout?.(text);
    const match = /READY (\S+)/.exec(buffered);
    if (match) {
      reader.releaseLock();
      // Keep draining stdout so the child never blocks on a full pipe.
      void proc.stdout.pipeTo(new WritableStream(onStdout ? { write: (chunk: Uint8Array) => onStdout(decoder.decode(chunk, { stream: true })) } : {}));
      return { proc, id: match[1]!, exited: proc.exited };
    }
  }
}
