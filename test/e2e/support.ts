/**
 * Shared pieces of the end-to-end failure tests: a small corpus and agents
 * whose fixture behaviour is chosen per agent, enqueueing through the API,
 * reading the final PostgreSQL state, and the invariants every file checks on it.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import postgres from "postgres";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, type SupervisorProcess } from "../helpers/engine.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { TEST_SERVER_URL } from "../helpers/db.ts";
import { PRIORITIES, type Priority } from "../../src/core/tasks.ts";
import { openDatabase } from "../../src/db/client.ts";
import type { Config } from "../../src/config.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { deletePrefixKeys } from "../../src/queue/prefixKeys.ts";

export const TERMINAL = ["completed", "failed", "cancelled", "timeout"];

export interface Corpus {
  /** A new agent over the corpus; `fixture` is read by the scripted worker ({mode: "slow", ms} etc.). */
  agent(fixture?: { mode: string; ms?: number }): Promise<string>;
}

/** One taxonomy root with a mapped document, so a refresh computes real (non-zero) coverage. */
export async function createCorpus(ctx: TestContext): Promise<Corpus> {
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
  await postDocument(ctx, { mappings: [{ node_id: root, version: "1", confidence: 0.9 }] });
  return {
    agent: async (fixture) =>
      (await postAgent(ctx, { taxonomy_node_ids: [root], features_config: fixture ? { fixture } : {} })).agent_id,
  };
}

/** POST /agents/{id}/coverage/refresh; returns the task id. */
export async function enqueue(ctx: TestContext, agentId: string, options: { force?: boolean; priority?: Priority } = {}): Promise<string> {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh${options.force ? "?force=true" : ""}`, {
    body: { priority: options.priority ?? "medium" },
  });
  if (res.status !== 202) throw new Error(`enqueue failed: ${res.status} ${res.text}`);
  return res.body.task_id as string;
}

/** POST .../coverage/refresh, retried on 503 (Redis unreachable during a failover) as a client would; returns the task id. */
export async function enqueueRetrying(ctx: TestContext, agentId: string, priority: Priority = "medium"): Promise<string> {
  return eventually(
    async () => {
      const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority } });
      if (res.status === 202) return res.body.task_id as string;
      if (res.status !== 503) throw new Error(`enqueue failed: ${res.status} ${res.text}`);
      return undefined;
    },
    30_000,
    "an enqueue accepted",
  );
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return results;
}

export type TaskRow = {
  task_id: string;
  status: string;
  attempt: number;
  max_attempts: number;
  error: string | null;
  lease_owner: string | null;
  cancellation_requested: boolean;
  priority: Priority;
};

export async function loadTasks(ctx: TestContext): Promise<Map<string, TaskRow>> {
  const rows = await ctx.database.db.execute<TaskRow>(sql`
    select task_id, status, attempt, max_attempts, error, lease_owner, cancellation_requested, priority from background_tasks`);
  return new Map(rows.map((r) => [r.task_id, { ...r }]));
}

export async function statusCounts(ctx: TestContext): Promise<Record<string, number>> {
  const rows = await ctx.database.db.execute<{ status: string; n: number }>(
    sql`select status, count(*)::int as n from background_tasks group by status`,
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Waits until none of `ids` is pending or running; returns the final rows. */
export async function waitAllTerminal(ctx: TestContext, ids: readonly string[], timeoutMs = 30_000): Promise<Map<string, TaskRow>> {
  return eventually(
    async () => {
      const rows = await loadTasks(ctx);
      return ids.every((id) => TERMINAL.includes(rows.get(id)?.status ?? "missing")) ? rows : undefined;
    },
    timeoutMs,
    `${ids.length} tasks to reach a terminal status`,
  );
}

/** coverage_history rows per task id (rows written by tasks only). */
export async function historyByTask(ctx: TestContext): Promise<Map<string, number>> {
  const rows = await ctx.database.db.execute<{ task_id: string; n: number }>(
    sql`select task_id, count(*)::int as n from coverage_history where task_id is not null group by task_id`,
  );
  return new Map(rows.map((r) => [r.task_id, r.n]));
}

/**
 * Exactly-once effects: every completed task has exactly one coverage_history
 * row, no other task has any, and no history row names a task that does not exist.
 */
export async function expectExactlyOnceEffects(ctx: TestContext, tasks: Map<string, TaskRow>) {
  const history = await historyByTask(ctx);
  const problems: string[] = [];
  for (const [id, n] of history) {
    const task = tasks.get(id);
    if (!task) problems.push(`history row for unknown task ${id}`);
    else if (task.status !== "completed") problems.push(`${n} history row(s) for ${task.status} task ${id}`);
    else if (n !== 1) problems.push(`${n} history rows for completed task ${id}`);
  }
  for (const task of tasks.values())
    if (task.status === "completed" && !history.has(task.task_id)) problems.push(`no history row for completed task ${task.task_id}`);
  expect(problems).toEqual([]);
  const [rows] = await ctx.database.db.execute<{ total: number; distinct_tasks: number }>(
    sql`select count(*)::int as total, count(distinct task_id)::int as distinct_tasks from coverage_history where task_id is not null`,
  );
  expect(rows!.total).toBe(rows!.distinct_tasks);
}

/** Every task id currently in one of the Redis priority queues of this context's prefix. */
export async function queuedIds(ctx: TestContext): Promise<Set<string>> {
  const prefix = `${ctx.config.redisPrefix}:{coverage}:queue:`;
  const lists = await Promise.all(PRIORITIES.map((p) => ctx.redis.zrange(`${prefix}${p}`, "0", "-1")));
  return new Set(lists.flat());
}

/**
 * Simulates FLUSHALL / a failover to an empty replica FOR THIS TEST ONLY: the
 * Redis server is shared, so only the keys of this context's prefix are deleted
 * (on every primary when the context's Redis is a cluster). Returns how many.
 */
export async function loseRedisData(ctx: TestContext): Promise<number> {
  return deletePrefixKeys(ctx.redis, queueKeys(ctx.config.redisPrefix));
}

/**
 * Terminates every backend of this test's database (what a PostgreSQL restart
 * does to its clients), from a connection to the server's maintenance database
 * so the test's own pool is hit like everyone else's. With `whileWorkerQueryActive`
 * it first waits (polling pg_stat_activity, no sleep) for an instant at which some
 * worker thread's statement is in flight, and terminates in that same statement:
 * the restart then interrupts real work instead of only idle connections.
 * Returns how many backends were terminated.
 */
export async function terminateBackends(ctx: TestContext, options: { whileWorkerQueryActive?: boolean; timeoutMs?: number } = {}): Promise<number> {
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
  const db = ctx.testDb.name;
  try {
    if (!options.whileWorkerQueryActive) {
      const rows = await admin<{ ok: boolean }[]>`
        select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = ${db} and pid <> pg_backend_pid()`;
      return rows.filter((r) => r.ok).length;
    }
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    while (Date.now() < deadline) {
      const rows = await admin<{ ok: boolean }[]>`
        with busy as (
          select count(*) as n from pg_stat_activity
          where datname = ${db} and state = 'active' and starts_with(application_name, 'agentq-worker-'))
        select pg_terminate_backend(a.pid) as ok from pg_stat_activity a, busy
        where busy.n > 0 and a.datname = ${db} and a.pid <> pg_backend_pid()`;
      if (rows.length > 0) return rows.filter((r) => r.ok).length;
    }
    throw new Error("no worker statement was ever in flight");
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/**
 * A context whose database handle is a fresh pool of its own, for reading state
 * while backends are being terminated: the test's shared pool is left alone, so
 * what the test observes never depends on how that pool recovers.
 */
export function withFreshPool(ctx: TestContext): TestContext & { closePool(): Promise<void> } {
  const database = openDatabase(ctx.testDb.url, { max: 1, applicationName: "agentq-e2e-observer" });
  return { ...ctx, database, closePool: () => database.sql.end({ timeout: 0 }) };
}

/** Waits until no backend of this test's database has an application_name starting with `prefix`. */
export async function waitForBackendsGone(ctx: TestContext, prefix: string, timeoutMs = 10_000) {
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
  try {
    await eventually(
      async () => {
        const [row] = await admin<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = ${ctx.testDb.name} and starts_with(application_name, ${prefix})`;
        return row!.n === 0 ? true : undefined;
      },
      timeoutMs,
      `backends ${prefix}* to disconnect`,
    );
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Child processes a file started, killed in afterAll whatever happened. */
export class Children {
  private readonly procs = new Set<SupervisorProcess>();
  track(p: SupervisorProcess): SupervisorProcess {
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }
  async killAll() {
    const live = [...this.procs];
    for (const p of live) p.proc.kill("SIGKILL");
    await Promise.all(live.map((p) => p.exited));
  }
}

/** Servers a suite starts for itself (a private Redis Cluster): their config goes into the test context. */
export interface SuiteService {
  start(): Promise<Partial<Config>>;
  stop(): Promise<void>;
}

/**
 * The hooks every end-to-end file needs: a test context with the fast engine settings
 * (handed to `use` once created), and the supervisor processes it starts, killed at the end.
 * A `service` is started before the context (its config is merged in) and stopped after it.
 */
export function e2eSuite(use: (ctx: TestContext) => void, options: { service?: SuiteService } = {}): Children {
  const children = new Children();
  let ctx: TestContext | undefined;
  beforeAll(async () => {
    const serviceConfig = (await options.service?.start()) ?? {};
    ctx = await createTestContext({ ...FAST_ENGINE, ...serviceConfig });
    use(ctx);
  }, 30_000);
  afterAll(async () => {
    try {
      await children.killAll();
      await ctx?.close();
    } finally {
      await options.service?.stop();
    }
  }, 15_000);
  return children;
}

/** Resolves with the exit code, or rejects if the process is still alive after `ms`. */
export async function exitWithin(p: SupervisorProcess, ms: number): Promise<{ code: number; elapsedMs: number }> {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`supervisor process ${p.id} still running after ${ms} ms`)), ms);
  });
  try {
    const code = await Promise.race([p.exited, timeout]);
    return { code, elapsedMs: performance.now() - start };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The end of a Redis failover test: every task completes exactly once, and the figures for the
 * runbook: the kill to the first completion after it (a task already running finishes without
 * Redis) and to the first completion of a probe (the first work through the new primary).
 */
export async function failoverOutcome(
  ctx: TestContext,
  tasks: { all: readonly string[]; probes: readonly string[]; killedAt: string },
): Promise<{ firstCompletionMs: number; firstProbeMs: number }> {
  const { all, probes, killedAt } = tasks;
  const final = await waitAllTerminal(ctx, all, 60_000);
  for (const id of all) expect({ id, status: final.get(id)!.status }).toEqual({ id, status: "completed" });
  await expectExactlyOnceEffects(ctx, await loadTasks(ctx));
  const [timing] = await ctx.database.db.execute<{ first_completion_ms: number; first_probe_ms: number }>(sql`
    select
      extract(epoch from (min(completed_at) filter (where completed_at > ${killedAt}::timestamptz) - ${killedAt}::timestamptz)) * 1000 as first_completion_ms,
      extract(epoch from (min(completed_at) filter (where task_id = any(string_to_array(${probes.join(",")}, ','))) - ${killedAt}::timestamptz)) * 1000 as first_probe_ms
    from background_tasks where status = 'completed'`);
  return { firstCompletionMs: Math.round(Number(timing!.first_completion_ms)), firstProbeMs: Math.round(Number(timing!.first_probe_ms)) };
}
