/**
 * The agentq side of the engine benchmark: a runtime on the benchmark database, 256
 * one-node agents, the Elysia API on a real port, and the scenarios run against
 * `startEngine` (burn-down, end to end over HTTP, pickup, cancels).
 */
import postgres from "postgres";
import { randomUUID } from "node:crypto";
import { loadConfig, type Config } from "../../src/config.ts";
import { openRuntime, type Runtime } from "../../src/main.ts";
import { startEngine, type Engine } from "../../src/supervisor/engine.ts";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startCpuProfile, summarizeProfiles, THREAD_PROFILE_DIR, type CpuProfile, type ProfileSummary } from "./threadProfile.ts";
import type { SupervisorEvent } from "../../src/supervisor/supervisor.ts";
import { TaskService } from "../../src/tasks/service.ts";
import { newTaskId } from "../../src/core/tasks.ts";
import type { Dispatchable } from "../../src/queue/dispatch.ts";
import { createApp, API_PREFIX } from "../../src/api/app.ts";
import { createKeyVerifier } from "../../src/auth/apiKeys.ts";
import { upsertTaxonomy } from "../../src/db/taxonomy.ts";
import { bounded } from "../support.ts";
import { CpuMeter, type CpuUse } from "./cpu.ts";
import {
  diffCounters,
  diffRedis,
  diffStatements,
  diffTables,
  redisCalls,
  settleOpenPools,
  type ActivitySample,
  type DbCounters,
  type StatementCounters,
  type StatsReader,
  type TableCounters,
} from "./stats.ts";
import { now, Signal, type Latency } from "./util.ts";

export const API_KEY = "bench-engine-key-0123456789abcdef";
const TAXONOMY_VERSION = "bench-engine";
/** Tasks round-robin over this many agents, so completions do not queue on one agent row lock. */
export const AGENTS = 256;
/** Enqueue calls in flight while the burn-down's tasks are written (no supervisor running). */
const PRELOAD_IN_FLIGHT = 256;
/** The runtime's pool size (openDatabase's default), for settling its statistics. */
const RUNTIME_POOL = 10;
export const WORKER_APP = "agentq-worker-%";
/** The production worker thread under a CPU profiler (--profile). */
const PROFILED_WORKER = new URL("../workers/profiledCoverage.ts", import.meta.url).href;

/** Records when each task started and ended (as the supervisor hears it), in performance.now() ms. */
export class TaskLog {
  readonly started = new Map<string, number>();
  readonly finished = new Map<string, { at: number; outcome: string }>();
  readonly changed = new Signal();
  /** Tasks started and not yet finished, as heard; and the most at once. */
  running = 0;
  peakRunning = 0;

  listener = (e: SupervisorEvent) => {
    if (e.type === "task_started") {
      this.started.set(e.taskId, now());
      this.peakRunning = Math.max(this.peakRunning, ++this.running);
    } else if (e.type === "task_finished") {
      if (this.started.has(e.taskId) && !this.finished.has(e.taskId)) this.running--;
      this.finished.set(e.taskId, { at: now(), outcome: e.outcome });
    } else return;
    this.changed.notify();
  };

  count(outcome: string): number {
    let n = 0;
    for (const f of this.finished.values()) if (f.outcome === outcome) n++;
    return n;
  }

  lastFinishedAt(): number {
    let last = 0;
    for (const f of this.finished.values()) last = Math.max(last, f.at);
    return last;
  }

  reset() {
    this.started.clear();
    this.finished.clear();
    this.running = 0;
    this.peakRunning = 0;
  }
}

export interface Agentq {
  runtime: Runtime;
  service: TaskService;
  base: string;
  database: string;
  stopServer(): Promise<void>;
  agents: string[];
}

export async function prepareAgentq(url: string, redisUrl: string, redisPrefix: string): Promise<Agentq> {
  const config: Config = loadConfig(
    {},
    {
      databaseUrl: url,
      redisUrl,
      redisPrefix,
      apiKeys: [API_KEY],
      logLevel: "warn",
      host: "127.0.0.1",
      port: 0,
      // Rate limits off: the end-to-end run sends ~2,000 enqueues with one key in a few seconds,
      // far over AGENTQ_RATE_LIMIT_ENQUEUE's default; the benchmark measures the engine, not the limiter.
      rateLimitEnqueue: 0,
      rateLimitRead: 0,
    },
  );
  const runtime = await openRuntime(config, "bench-engine");
  const { sql } = runtime.database;
  await sql.unsafe(`truncate agents, coverage_targets, background_tasks, coverage_history, webhook_deliveries,
                             taxonomy_nodes, taxonomy_edges cascade`);
  const node = randomUUID();
  await upsertTaxonomy(runtime.database.db, TAXONOMY_VERSION, [{ node_id: node, label: "bench engine node" }]);
  const rows = await sql<{ agent_id: string }[]>`
    insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level)
    select gen_random_uuid(), 'bench engine agent ' || i, array[${node}::uuid], ${TAXONOMY_VERSION}, 'one node, no documents', 1
    from generate_series(1, ${AGENTS}) as i
    returning agent_id`;
  await sql`analyze agents`;
  const app = createApp({
    config,
    logger: runtime.logger,
    database: runtime.database,
    redis: runtime.redis,
    keys: createKeyVerifier(runtime.database.db, config.apiKeys),
  });
  app.listen({ hostname: "127.0.0.1", port: 0 });
  const port = app.server?.port;
  if (!port) throw new Error("the HTTP server did not start");
  return {
    runtime,
    service: new TaskService(runtime),
    base: `http://127.0.0.1:${port}${API_PREFIX}`,
    database: decodeURIComponent(new URL(url).pathname.slice(1)),
    stopServer: async () => {
      await app.stop();
    },
    agents: rows.map((r) => r.agent_id),
  };
}

export async function resetTasks(q: Agentq): Promise<void> {
  await q.runtime.database.sql`truncate background_tasks, task_attempts, coverage_history, webhook_deliveries, webhook_outbox`;
}

export async function enqueueLibrary(q: Agentq, i: number): Promise<string> {
  const { task } = await q.service.enqueueRefresh(q.agents[i % q.agents.length]!, { priority: "medium", webhookUrl: null, force: true });
  return task.task_id;
}

async function enqueueHttp(q: Agentq, i: number): Promise<string> {
  const res = await fetch(`${q.base}/agents/${q.agents[i % q.agents.length]!}/coverage/refresh?force=true`, {
    method: "POST",
    headers: { "x-api-key": API_KEY },
  });
  const body = (await res.json()) as { task_id?: string };
  if (res.status !== 202 || !body.task_id) throw new Error(`enqueue over HTTP answered ${res.status}: ${JSON.stringify(body)}`);
  return body.task_id;
}

export async function startAgentqEngine(
  q: Agentq,
  workers: number,
  concurrency: number,
  log: TaskLog,
  workerUrl?: string,
  claimCooldownMs?: number,
): Promise<Engine> {
  const engine = await startEngine(q.runtime, { workers, concurrency, workerUrl, claimCooldownMs, onFatal: (e) => console.error(`engine fatal: ${e.message}`) });
  engine.supervisor.on(log.listener);
  return engine;
}

// ---------------------------------------------------------------------------
// Burn-down

export interface AgentqBurn {
  tasks: number;
  /** startEngine() called -> the last task's completion heard (after its commit). */
  wallMs: number;
  /** startEngine() called -> the first claim (started_at of the earliest task). */
  firstClaimMs: number;
  perSecond: number;
  /** Most tasks running at once, as the supervisor's events tell. */
  peakInFlight: number;
  /** Time to write the N pending tasks beforehand (not timed in the rate). */
  preloadMs: number;
  runP50Ms: number | null;
  cpu: CpuUse;
  db: DbCounters;
  redisCallsPerTask: number;
  redisTop: [string, number][];
  tables: TableCounters[] | null;
  statements: StatementCounters[] | null;
  activity: { rows: ActivitySample[]; samples: number } | null;
  /** With --profile: CPU profiles of the worker threads and of the main thread, summarized. */
  threadProfiles: { workers: ProfileSummary; main: ProfileSummary } | null;
}

export interface BurnSettings {
  workers: number;
  concurrency: number;
  stats: StatsReader;
  profile: boolean;
}

const agentqRole = (app: string) => (app.startsWith("agentq-worker-") ? "worker" : app === "agentq-bench-engine" ? "main (supervisor, reconciler)" : app || "other");

/**
 * N tasks written first through the library path (TaskService.enqueueRefresh, 256 in
 * flight, group-committed) with no supervisor running; then startEngine, timed to the last
 * durable completion. `collect: false` skips the statistics (the warm-up).
 */
export async function agentqBurnDown(q: Agentq, s: BurnSettings, tasks: number, collect = true): Promise<AgentqBurn> {
  const { stats } = s;
  const log = new TaskLog();
  await resetTasks(q);
  const p0 = now();
  await bounded(tasks, PRELOAD_IN_FLIGHT, async (i) => {
    await enqueueLibrary(q, i);
  });
  const preloadMs = now() - p0;
  const [pending] = await q.runtime.database.sql<{ n: number }[]>`select count(*)::int as n from background_tasks where status = 'pending'`;
  if (pending?.n !== tasks) throw new Error(`burn-down: ${pending?.n} pending tasks, expected ${tasks}`);
  const mainPool = [{ sql: q.runtime.database.sql, max: RUNTIME_POOL }];
  if (collect) await settleOpenPools(mainPool);
  const probe = collect && s.profile && (await stats.probeStatements(q.database));
  const tables0 = collect && s.profile ? await stats.tables(q.database) : null;
  const statements0 = probe ? await stats.statements(q.database) : null;
  const db0 = collect ? await stats.counters(q.database) : null;
  const redis0 = await redisCalls(q.runtime.redis);
  const sampler = collect && s.profile ? stats.sampleActivity(q.database, agentqRole) : null;
  if (collect && s.profile) emptyThreadProfileDir();
  const mainProfiler = collect && s.profile ? await startCpuProfile() : null;

  const meter = new CpuMeter();
  const startedEpoch = Date.now();
  const t0 = now();
  let engine: Engine | null = null;
  let cpu: CpuUse;
  let wallMs: number;
  let redis: ReturnType<typeof diffRedis>;
  try {
    engine = await startAgentqEngine(q, s.workers, s.concurrency, log, mainProfiler ? PROFILED_WORKER : undefined);
    // Tasks that ended before the listener was attached: their commits precede this read.
    const attachedAt = now();
    const early = await q.runtime.database.sql<{ task_id: string; status: string }[]>`
      select task_id, status from background_tasks where status <> 'pending' and status <> 'running'`;
    for (const r of early) if (!log.finished.has(r.task_id)) log.finished.set(r.task_id, { at: attachedAt, outcome: r.status });
    log.changed.notify();
    await log.changed.until(() => log.finished.size >= tasks, 600_000, `${tasks} agentq tasks (burn-down)`);
    wallMs = log.lastFinishedAt() - t0;
    cpu = meter.stop();
    redis = diffRedis(redis0, await redisCalls(q.runtime.redis));
  } finally {
    if (engine) await engine.stop();
  }
  const activity = sampler ? await sampler.stop() : null;
  const threadProfiles = mainProfiler ? await collectThreadProfiles(mainProfiler, s.workers) : null;
  const [row] = await q.runtime.database.sql<{ completed: number; total: number; run_p50: number | null; first_ms: number | null }[]>`
    select count(*) filter (where status = 'completed')::int as completed, count(*)::int as total,
           percentile_cont(0.5) within group (order by extract(epoch from completed_at - started_at) * 1000) as run_p50,
           extract(epoch from min(started_at))::float8 * 1000 - ${startedEpoch}::float8 as first_ms
    from background_tasks`;
  if (row?.completed !== tasks || row.total !== tasks) throw new Error(`burn-down: expected ${tasks} completed rows, found ${row?.completed} of ${row?.total}`);
  let db = null as DbCounters | null;
  let tables = null as TableCounters[] | null;
  let statements = null as StatementCounters[] | null;
  if (collect && db0) {
    await stats.backendsGone(q.database, WORKER_APP);
    await settleOpenPools(mainPool);
    db = diffCounters(db0, await stats.counters(q.database));
    if (tables0) tables = diffTables(tables0, await stats.tables(q.database));
    if (statements0) statements = diffStatements(statements0, await stats.statements(q.database));
  }
  return {
    tasks,
    wallMs,
    firstClaimMs: Number(row.first_ms ?? Number.NaN),
    perSecond: tasks / (wallMs / 1000),
    peakInFlight: log.peakRunning,
    preloadMs,
    runP50Ms: row.run_p50 === null ? null : Number(row.run_p50),
    cpu,
    db: db ?? diffCounters(emptyCounters, emptyCounters),
    redisCallsPerTask: redis.total / tasks,
    redisTop: redis.top,
    tables,
    statements,
    activity,
    threadProfiles,
  };
}

/** Tasks the running supervisor completes before a warm burn-down is timed: as many as the burn-down, so the JIT has settled (measured: CPU per task still fell between 3,000 and 20,000). */
export const WARM_ENGINE_WARMUP = 20_000;

export interface AgentqWarmBurn {
  tasks: number;
  /** The one ZADD pipeline sent -> the last task's completion heard. */
  wallMs: number;
  perSecond: number;
  peakInFlight: number;
  cpu: CpuUse;
}

/**
 * The same burn-down with the supervisor already running and warm: its worker threads have
 * run WARM_ENGINE_WARMUP tasks, so their JIT has compiled the hot path (each Bun Worker is a
 * VM of its own, and a fresh one compiles everything again: the cold burn-down pays that).
 * The N tasks are written pending without being dispatched (the group-committed INSERT of
 * the library path), then ZADDed in one pipeline; timed from that pipeline to the last
 * durable completion. Not the measurement (there the supervisor starts after the
 * tasks are pending), but the steady state a long-lived supervisor runs in.
 */
export async function agentqWarmBurnDown(q: Agentq, s: BurnSettings, tasks: number): Promise<AgentqWarmBurn> {
  const log = new TaskLog();
  await resetTasks(q);
  const engine = await startAgentqEngine(q, s.workers, s.concurrency, log);
  try {
    await bounded(WARM_ENGINE_WARMUP, PRELOAD_IN_FLIGHT, async (i) => {
      await enqueueLibrary(q, i);
    });
    await log.changed.until(() => log.finished.size >= WARM_ENGINE_WARMUP, 600_000, `${WARM_ENGINE_WARMUP} agentq tasks (warm-up)`);
    await resetTasks(q);
    log.reset();
    const queued: Dispatchable[] = [];
    await bounded(tasks, PRELOAD_IN_FLIGHT, async (i) => {
      const { task } = await q.service.inserter.insert({
        taskId: newTaskId(),
        agentId: q.agents[i % q.agents.length]!,
        priority: "medium",
        webhookUrl: null,
        timeoutMs: q.runtime.config.taskTimeoutMs,
        maxAttempts: q.runtime.config.maxAttempts,
        dedupe: false,
      });
      queued.push({ taskId: task.task_id, priority: task.priority, score: Date.parse(task.created_at) });
    });
    const meter = new CpuMeter();
    const t0 = now();
    await q.service.dispatcher.dispatch(queued);
    await log.changed.until(() => log.finished.size >= tasks, 600_000, `${tasks} agentq tasks (warm burn-down)`);
    const wallMs = log.lastFinishedAt() - t0;
    const cpu = meter.stop();
    const [row] = await q.runtime.database.sql<{ completed: number }[]>`
      select count(*) filter (where status = 'completed')::int as completed from background_tasks`;
    if (row?.completed !== tasks) throw new Error(`warm burn-down: expected ${tasks} completed rows, found ${row?.completed}`);
    return { tasks, wallMs, perSecond: tasks / (wallMs / 1000), peakInFlight: log.peakRunning, cpu };
  } finally {
    await engine.stop();
  }
}

function emptyThreadProfileDir(): void {
  rmSync(THREAD_PROFILE_DIR, { recursive: true, force: true });
  mkdirSync(THREAD_PROFILE_DIR, { recursive: true });
}

/**
 * Each worker thread wrote its profile before it said `drained` (bench/workers/profiledCoverage.ts),
 * and engine.stop() returned after the drain: every profile is on disk by now.
 */
async function collectThreadProfiles(main: { stop(): Promise<CpuProfile> }, workers: number) {
  const dir = THREAD_PROFILE_DIR;
  const mainProfile = await main.stop();
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  const profiles = files.map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as CpuProfile);
  rmSync(dir, { recursive: true, force: true });
  if (profiles.length < workers) console.error(`thread profiles: ${profiles.length} of ${workers} worker threads wrote one`);
  return { workers: summarizeProfiles(profiles), main: summarizeProfiles([mainProfile]) };
}

const emptyCounters: DbCounters = { commits: 0, rollbacks: 0, fetched: 0, inserted: 0, updated: 0, deleted: 0, walRecords: 0, walBytes: 0, walWrites: 0, walSyncs: 0 };

// ---------------------------------------------------------------------------
// End to end over HTTP

export interface AgentqE2e {
  tasks: number;
  peakInFlight: number;
  wallMs: number;
  enqueuedMs: number;
  perSecond: number;
  runP50Ms: number | null;
  /** Enqueue to claim (created_at -> started_at), p50 and p99: what a claim cooldown adds. */
  waitP50Ms: number;
  waitP99Ms: number;
  cpu: CpuUse;
}

/** N tasks enqueued over HTTP by `clients` callers while the engine runs; timed to the last durable completion. */
export async function agentqHttp(q: Agentq, log: TaskLog, tasks: number, clients: number): Promise<AgentqE2e> {
  await resetTasks(q);
  log.reset();
  const meter = new CpuMeter();
  const t0 = now();
  await bounded(tasks, clients, async (i) => {
    await enqueueHttp(q, i);
  });
  const enqueuedMs = now() - t0;
  await log.changed.until(() => log.finished.size >= tasks, 300_000, `${tasks} agentq tasks (HTTP)`);
  const wallMs = log.lastFinishedAt() - t0;
  const cpu = meter.stop();
  const other = tasks - log.count("completed");
  if (other > 0) throw new Error(`${other} agentq tasks did not complete (HTTP)`);
  const [row] = await q.runtime.database.sql<{ completed: number; total: number; run_p50: number | null; wait_p50: number; wait_p99: number }[]>`
    select count(*) filter (where status = 'completed')::int as completed, count(*)::int as total,
           percentile_cont(0.5) within group (order by extract(epoch from completed_at - started_at) * 1000) as run_p50,
           percentile_cont(0.5) within group (order by extract(epoch from started_at - created_at) * 1000) as wait_p50,
           percentile_cont(0.99) within group (order by extract(epoch from started_at - created_at) * 1000) as wait_p99
    from background_tasks`;
  if (row?.completed !== tasks || row.total !== tasks) throw new Error(`expected ${tasks} completed rows, found ${row?.completed} of ${row?.total}`);
  return {
    tasks,
    peakInFlight: log.peakRunning,
    wallMs,
    enqueuedMs,
    perSecond: tasks / (wallMs / 1000),
    runP50Ms: row.run_p50 === null ? null : Number(row.run_p50),
    waitP50Ms: Number(row.wait_p50),
    waitP99Ms: Number(row.wait_p99),
    cpu,
  };
}

export async function agentqWarmup(q: Agentq, log: TaskLog, n: number): Promise<void> {
  log.reset();
  await bounded(n, 8, async (i) => {
    await enqueueLibrary(q, i);
  });
  await bounded(n, 8, async (i) => {
    await enqueueHttp(q, i);
  });
  await log.changed.until(() => log.finished.size >= 2 * n, 60_000, "warm-up tasks");
}

// ---------------------------------------------------------------------------
// Pickup and cancel latency

export async function agentqPickup(q: Agentq, log: TaskLog, count: number): Promise<{ db: Latency; client: Latency; run: Latency }> {
  await resetTasks(q);
  log.reset();
  const client: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = now();
    const id = await enqueueLibrary(q, i);
    await log.changed.until(() => log.finished.has(id), 30_000, `pickup task ${id}`);
    const started = log.started.get(id);
    if (started === undefined || log.finished.get(id)?.outcome !== "completed") throw new Error(`pickup task ${id} did not complete`);
    client.push(started - t0);
    ids.push(id);
  }
  const rows = await q.runtime.database.sql<{ ms: number; run: number }[]>`
    select extract(epoch from started_at - created_at)::float8 * 1000 as ms,
           extract(epoch from completed_at - started_at)::float8 * 1000 as run
    from background_tasks where task_id = any(${ids}::text[]) and status = 'completed'`;
  if (rows.length !== count) throw new Error(`expected ${count} completed pickup tasks, found ${rows.length}`);
  return {
    db: { what: "agentq pickup, rows: `started_at - created_at` (INSERT -> claim UPDATE)", samples: rows.map((r) => Number(r.ms)) },
    client: { what: "agentq pickup, client: `enqueueRefresh` called -> supervisor hears `started`", samples: client },
    run: { what: "agentq run of one tiny task at low load, rows: `completed_at - started_at` (claim -> completion transaction)", samples: rows.map((r) => Number(r.run)) },
  };
}

const headers = { "x-api-key": API_KEY };

/** DELETE /tasks/{id}, then GET it every 1 ms until it shows `cancelled`; resolves to [DELETE answered, cancelled visible] (ms after t0). */
async function deleteAndWatch(q: Agentq, id: string, t0: number): Promise<[number, number]> {
  const del = await fetch(`${q.base}/tasks/${id}`, { method: "DELETE", headers });
  await del.arrayBuffer();
  if (del.status !== 204) throw new Error(`DELETE answered ${del.status}`);
  const answered = now() - t0;
  for (;;) {
    const res = await fetch(`${q.base}/tasks/${id}`, { headers });
    const body = (await res.json()) as { status?: string };
    if (body.status === "cancelled") return [answered, now() - t0];
    if (body.status !== "running") throw new Error(`cancelled task ${id} reached ${body.status}`);
    if (now() - t0 > 10_000) throw new Error(`task ${id} not cancelled after 10 s`);
    await Bun.sleep(1);
  }
}

/** Running tasks whose handler sleeps abortably in JavaScript (bench/workers/sleeper.ts), cancelled one at a time. */
export async function agentqCancel(q: Agentq, log: TaskLog, count: number): Promise<Latency[]> {
  await resetTasks(q);
  log.reset();
  const visible: number[] = [];
  const event: number[] = [];
  const answered: number[] = [];
  for (let i = 0; i < count; i++) {
    const id = await enqueueLibrary(q, i);
    await log.changed.until(() => log.started.has(id), 30_000, `task ${id} to run`);
    const t0 = now();
    const [a, v] = await deleteAndWatch(q, id, t0);
    answered.push(a);
    visible.push(v);
    await log.changed.until(() => log.finished.has(id), 10_000, `task ${id} to finish`);
    const fin = log.finished.get(id)!;
    if (fin.outcome !== "cancelled") throw new Error(`task ${id} finished ${fin.outcome}, expected cancelled`);
    event.push(fin.at - t0);
  }
  return [
    { what: "agentq cancel (JS sleep): `DELETE /tasks/{id}` sent -> `GET /tasks/{id}` shows `cancelled`", samples: visible },
    { what: "agentq cancel (JS sleep): `DELETE` sent -> actor's `cancelled` message (row already written)", samples: event },
    { what: "agentq cancel (JS sleep): `DELETE` response time (204)", samples: answered },
  ];
}

/** Past this, a backend still running the statement is counted at the cap and terminated by the benchmark. */
export const PG_CANCEL_CAP_MS = 2500;

export interface PgCancel {
  visible: Latency;
  backend: Latency;
  /** Samples whose backend still ran `pg_sleep` 100 ms after the DELETE was sent. */
  over100: number;
  /** Backends the benchmark had to terminate itself (still running at the cap). */
  terminated: number;
}

/**
 * Running tasks blocked inside PostgreSQL (bench/workers/pgSleeper.ts: `select pg_sleep(30)`),
 * cancelled one at a time. From a separate connection, pg_stat_activity is polled every 2 ms
 * for the backend that runs the task's statement: DELETE sent -> that backend no longer
 * active in pg_sleep.
 */
export async function agentqPgCancel(q: Agentq, log: TaskLog, count: number, url: string): Promise<PgCancel> {
  await resetTasks(q);
  log.reset();
  const u = new URL(url);
  u.searchParams.set("application_name", "agentq-bench-pgwatch");
  const watch = postgres(u.toString(), { max: 1, onnotice: () => {} });
  const sleeping = async () =>
    (
      await watch<{ pid: number }[]>`
        select pid from pg_stat_activity
        where datname = current_database() and application_name like ${WORKER_APP} and state = 'active' and query like '%pg_sleep%'`
    ).map((r) => r.pid);
  const visible: number[] = [];
  const backend: number[] = [];
  let terminated = 0;
  try {
    for (let i = 0; i < count; i++) {
      const id = await enqueueLibrary(q, i);
      await log.changed.until(() => log.started.has(id), 30_000, `task ${id} to run`);
      let pid = 0;
      const deadline = now() + 10_000;
      while (pid === 0) {
        const pids = await sleeping();
        if (pids.length > 1) throw new Error(`more than one backend in pg_sleep: ${pids.join(", ")}`);
        if (pids.length === 1) pid = pids[0]!;
        else if (now() > deadline) throw new Error(`task ${id}'s pg_sleep never showed in pg_stat_activity`);
        else await Bun.sleep(2);
      }
      const t0 = now();
      const watching = (async () => {
        for (;;) {
          const [r] = await watch<{ n: number }[]>`
            select count(*)::int as n from pg_stat_activity where pid = ${pid} and state = 'active' and query like '%pg_sleep%'`;
          const at = now() - t0;
          if (r?.n === 0) return at;
          if (at >= PG_CANCEL_CAP_MS) {
            terminated++;
            await watch`select pg_terminate_backend(${pid})`;
            return PG_CANCEL_CAP_MS;
          }
          await Bun.sleep(2);
        }
      })();
      const [[, v], b] = await Promise.all([deleteAndWatch(q, id, t0), watching]);
      visible.push(v);
      backend.push(b);
      await log.changed.until(() => log.finished.has(id), 10_000, `task ${id} to finish`);
      const fin = log.finished.get(id)!;
      if (fin.outcome !== "cancelled") throw new Error(`task ${id} finished ${fin.outcome}, expected cancelled`);
    }
  } finally {
    await watch.end({ timeout: 5 });
  }
  return {
    visible: { what: "agentq cancel inside PostgreSQL (`select pg_sleep(30)`): `DELETE` sent -> `GET` shows `cancelled`", samples: visible },
    backend: {
      what: "agentq cancel inside PostgreSQL: `DELETE` sent -> the backend no longer runs `pg_sleep` (pg_stat_activity, polled every 2 ms)",
      samples: backend,
      capMs: PG_CANCEL_CAP_MS,
    },
    over100: backend.filter((b) => b > 100).length,
    terminated,
  };
}
