/**
 * Task-engine benchmark: agentq's engine (PostgreSQL truth + Redis dispatch +
 * a supervisor of Bun Worker threads) against BullMQ, in one run on one machine.
 *
 *  1. Throughput of N tiny tasks with W workers, to durable completion:
 *     agentq enqueued through the library (TaskService.enqueueRefresh) and,
 *     separately, through a real listening HTTP server; BullMQ with W Worker
 *     instances (concurrency 1 each) processing N no-op jobs.
 *  2. Pickup latency at low load (one task at a time): enqueue -> running.
 *  3. Cancel latency of a running task: DELETE /api/v1/tasks/{id} until
 *     GET /api/v1/tasks/{id} says `cancelled` (a worker whose task sleeps
 *     abortably, bench/workers/sleeper.ts); BullMQ's closest peer is
 *     Worker.cancelJob, which only reaches jobs of its own process, relayed
 *     here over Redis pub/sub.
 *
 * Everything runs in this process (supervisor threads, HTTP server, client,
 * BullMQ workers), against its own database (`agentq_bench_engine` on the
 * server of DATABASE_URL; BENCH_ENGINE_DATABASE_URL overrides) and its own
 * Redis key prefix (`agentq-bench-engine`, deleted at start and end).
 */
import Redis from "ioredis";
import os from "node:os";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";
import { Queue, Worker as BullWorker, UnrecoverableError, type Job } from "bullmq";
import { DEFAULTS, loadConfig, type Config } from "../src/config.ts";
import { ensureDatabase, migrateDatabase } from "../src/db/migrate.ts";
import { openRuntime, type Runtime } from "../src/main.ts";
import { startEngine, type Engine } from "../src/supervisor/engine.ts";
import type { SupervisorEvent } from "../src/supervisor/supervisor.ts";
import { TaskService } from "../src/tasks/service.ts";
import { createApp, API_PREFIX } from "../src/api/app.ts";
import { createKeyVerifier } from "../src/auth/apiKeys.ts";
import { upsertTaxonomy } from "../src/db/taxonomy.ts";
import { bounded, parseCommandLine, writeBenchmarkSection } from "./support.ts";

// ---------------------------------------------------------------------------
// Settings

const REDIS_PREFIX = "agentq-bench-engine";
const BULL_PREFIX = `${REDIS_PREFIX}:bullmq`;
const BULL_CANCEL_CHANNEL = `${REDIS_PREFIX}:bullmq-cancel`;
const API_KEY = "bench-engine-key-0123456789abcdef";
const TAXONOMY_VERSION = "bench-engine";
/** Tasks round-robin over this many agents, so completions do not queue on one agent row lock. */
const AGENTS = 256;
/** Tasks (and jobs) per enqueue path run before anything is timed: JIT, connection pools, plans. */
const WARMUP = 150;
const SECTION_TITLE = "## Task engine";
const SLEEPER_WORKER = new URL("./workers/sleeper.ts", import.meta.url).href;

interface Options {
  tasks: number;
  rounds: number;
  workers: number;
  concurrency: number;
  pickups: number;
  cancels: number;
  writeDocs: boolean;
}

const HELP = `usage: bun run bench engine [--tasks N] [--rounds R] [--workers W] [--concurrency C] [--pickups P] [--cancels K] [--no-docs]

  --tasks N        tasks per throughput measurement (default 2000)
  --rounds R       throughput rounds, each measuring agentq (library), agentq (HTTP) and BullMQ
                   in turn; the median round of each is reported (default 3)
  --workers W      worker threads of the supervisor / BullMQ Worker instances (default 4)
  --concurrency C  enqueue requests in flight during the throughput runs (default 64)
  --pickups P      one-at-a-time tasks for the pickup latency (default 200)
  --cancels K      running tasks cancelled for the cancel latency (default 50)
  --no-docs        do not rewrite the "${SECTION_TITLE}" section of docs/benchmarks.md

Database: BENCH_ENGINE_DATABASE_URL, else database agentq_bench_engine on the server of
DATABASE_URL (default postgres://root@127.0.0.1:5432); created and migrated if missing, and
its tables are truncated. Redis: REDIS_URL (default redis://127.0.0.1:6379/0); only keys
under "${REDIS_PREFIX}:" are written and deleted.`;

function parseArgs(args: string[]): Options | string {
  const o: Options = { tasks: 2000, rounds: 3, workers: 4, concurrency: 64, pickups: 200, cancels: 50, writeDocs: true };
  const int = (flag: string, raw: string | undefined, min: number, max: number): number | string => {
    const n = Number(raw);
    return Number.isInteger(n) && n >= min && n <= max ? n : `${flag} takes an integer from ${min} to ${max}`;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--no-docs") {
      o.writeDocs = false;
      continue;
    }
    const limits: Record<string, [keyof Options, number, number]> = {
      "--tasks": ["tasks", 1, 1_000_000],
      "--rounds": ["rounds", 1, 20],
      "--workers": ["workers", 1, 64],
      "--concurrency": ["concurrency", 1, 1024],
      "--pickups": ["pickups", 1, 100_000],
      "--cancels": ["cancels", 1, 10_000],
    };
    const limit = limits[a];
    if (!limit) return `unknown flag: ${a}`;
    const n = int(a, args[++i], limit[1], limit[2]);
    if (typeof n === "string") return n;
    (o[limit[0]] as number) = n;
  }
  return o;
}

export function benchEngineDatabaseUrl(env: Record<string, string | undefined> = process.env): string {
  if (env.BENCH_ENGINE_DATABASE_URL) return env.BENCH_ENGINE_DATABASE_URL;
  const u = new URL(env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  u.pathname = "/agentq_bench_engine";
  return u.toString();
}

/** The benchmark truncates tables: refuse the application's database and the coverage corpus. */
function assertDedicatedDatabase(url: string): void {
  const name = (u: string) => decodeURIComponent(new URL(u).pathname.replace(/^\//, ""));
  const bench = name(url);
  const app = name(process.env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  if (["agentq", "postgres", "agentq_bench", app].includes(bench))
    throw new Error(`refusing to use database "${bench}" for the engine benchmark: it truncates tables; pick another BENCH_ENGINE_DATABASE_URL`);
}

// ---------------------------------------------------------------------------
// Small tools

const now = () => performance.now();

/** Nearest-rank percentile. */
function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

const fmtMs = (ms: number) =>
  !Number.isFinite(ms) ? "n/a" : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`;
const fmtRate = (r: number) => (r >= 100 ? r.toFixed(0) : r.toFixed(1));
const fmtInt = (n: number) => n.toLocaleString("en-US");

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Something that can be waited for until a condition holds, re-checked on every notify(). */
class Signal {
  private waiters = new Set<{ check: () => boolean; resolve: () => void }>();
  notify() {
    for (const w of this.waiters)
      if (w.check()) {
        this.waiters.delete(w);
        w.resolve();
      }
  }
  until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    let waiter!: { check: () => boolean; resolve: () => void };
    const p = new Promise<void>((resolve) => {
      waiter = { check, resolve };
      this.waiters.add(waiter);
    });
    return withTimeout(p, timeoutMs, what).finally(() => this.waiters.delete(waiter));
  }
}

// ---------------------------------------------------------------------------
// CPU accounting from /proc (Linux): this process (all its threads), PostgreSQL, Redis

interface CpuSnapshot {
  at: number;
  self: number;
  /** This process's threads: tid -> [name, ticks]. */
  threads: Map<number, [string, number]>;
  postgres: Map<number, number>;
  redis: Map<number, number>;
  /** Busy and total jiffies of the whole machine. */
  busy: number;
  total: number;
}

/** Name of the benchmark database: only its backends count as "postgres" CPU (the server is shared). */
let benchDatabaseName = "";

function isBenchBackend(pid: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(` ${benchDatabaseName} `);
  } catch {
    return false;
  }
}

const CLK_TCK = (() => {
  try {
    const out = Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim();
    return Number(out) || 100;
  } catch {
    return 100;
  }
})();

function procTimes(pid: string): { comm: string; ticks: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const fields = stat.slice(close + 2).split(" ");
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return { comm: stat.slice(open + 1, close), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

function cpuSnapshot(): CpuSnapshot {
  const snap: CpuSnapshot = { at: now(), self: 0, threads: new Map(), postgres: new Map(), redis: new Map(), busy: 0, total: 0 };
  try {
    snap.self = procTimes(String(process.pid))?.ticks ?? 0;
    for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
      const t = procTimes(`${process.pid}/task/${tid}`);
      if (t) snap.threads.set(Number(tid), [t.comm, t.ticks]);
    }
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      const t = procTimes(pid);
      if (!t) continue;
      if (t.comm === "postgres" && isBenchBackend(pid)) snap.postgres.set(Number(pid), t.ticks);
      else if (t.comm === "redis-server") snap.redis.set(Number(pid), t.ticks);
    }
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    snap.total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    snap.busy = snap.total - idle;
  } catch {
    // not Linux: CPU figures stay 0
  }
  return snap;
}

interface CpuUse {
  /** CPU seconds used during the interval. */
  self: number;
  /** Of `self`: the main thread, the Bun Worker threads (actors), the runtime's helper threads (JIT, GC, I/O). */
  mainThread: number;
  workerThreads: number;
  helperThreads: number;
  postgres: number;
  redis: number;
  /** Share of the whole machine busy during the interval (0..1). */
  machineBusy: number;
}

function cpuSince(before: CpuSnapshot): CpuUse {
  const after = cpuSnapshot();
  const sum = (a: Map<number, number>, b: Map<number, number>) => {
    let s = 0;
    for (const [pid, t] of a) s += t - (b.get(pid) ?? 0);
    return s / CLK_TCK;
  };
  let mainThread = 0;
  let workerThreads = 0;
  let helperThreads = 0;
  for (const [tid, [name, ticks]] of after.threads) {
    const d = (ticks - (before.threads.get(tid)?.[1] ?? 0)) / CLK_TCK;
    if (tid === process.pid) mainThread += d;
    else if (name === "Worker") workerThreads += d;
    else helperThreads += d;
  }
  return {
    self: (after.self - before.self) / CLK_TCK,
    mainThread,
    workerThreads,
    helperThreads,
    postgres: sum(after.postgres, before.postgres),
    redis: sum(after.redis, before.redis),
    machineBusy: after.total > before.total ? (after.busy - before.busy) / (after.total - before.total) : 0,
  };
}

// ---------------------------------------------------------------------------
// Watching the agentq supervisor

/** Records when each task started and finished (as the supervisor hears it), in performance.now() ms. */
class TaskLog {
  readonly started = new Map<string, number>();
  readonly finished = new Map<string, { at: number; outcome: string }>();
  completed = 0;
  other = 0;
  readonly changed = new Signal();

  listener = (e: SupervisorEvent) => {
    if (e.type === "task_started") this.started.set(e.taskId, now());
    else if (e.type === "task_finished") {
      this.finished.set(e.taskId, { at: now(), outcome: e.outcome });
      if (e.outcome === "completed") this.completed++;
      else this.other++;
    } else return;
    this.changed.notify();
  };

  reset() {
    this.started.clear();
    this.finished.clear();
    this.completed = 0;
    this.other = 0;
  }
}

// ---------------------------------------------------------------------------
// Results

interface Throughput {
  system: string;
  path: string;
  tasks: number;
  workers: number;
  wallMs: number;
  /** When the last enqueue call returned (ms after the first started). */
  enqueuedMs: number;
  perSecond: number;
  /** Median claim -> completion time of one task (agentq, from the rows). */
  runP50Ms: number | null;
  cpu: CpuUse;
  /** tasks/s of every round (set on the reported, median round). */
  rounds?: number[];
}

/** The round with the median rate (the lower middle one for an even count), carrying every round's rate. */
function medianRound(runs: Throughput[]): Throughput {
  const sorted = [...runs].sort((a, b) => a.perSecond - b.perSecond);
  const m = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return { ...m, rounds: runs.map((r) => r.perSecond) };
}

interface Latency {
  what: string;
  samples: number[];
}

interface Machine {
  cpu: string;
  cores: number;
  memory: string;
  bun: string;
  postgres: string;
  pgSettings: string;
  redis: string;
  redisPersistence: string;
  bullmq: string;
  date: string;
}

// ---------------------------------------------------------------------------
// agentq

interface Agentq {
  runtime: Runtime;
  service: TaskService;
  base: string;
  stopServer(): Promise<void>;
  agents: string[];
}

async function prepareAgentq(url: string, redisUrl: string): Promise<Agentq> {
  const config: Config = loadConfig(
    {},
    { databaseUrl: url, redisUrl, redisPrefix: REDIS_PREFIX, apiKeys: [API_KEY], logLevel: "warn", host: "127.0.0.1", port: 0 },
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
    stopServer: async () => {
      await app.stop();
    },
    agents: rows.map((r) => r.agent_id),
  };
}

async function resetTasks(q: Agentq): Promise<void> {
  await q.runtime.database.sql`truncate background_tasks, coverage_history, webhook_deliveries, webhook_outbox`;
}

async function enqueueLibrary(q: Agentq, i: number): Promise<string> {
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

async function startAgentqEngine(q: Agentq, workers: number, log: TaskLog, workerUrl?: string): Promise<Engine> {
  const engine = await startEngine(q.runtime, { workers, workerUrl, onFatal: (e) => console.error(`engine fatal: ${e.message}`) });
  engine.supervisor.on(log.listener);
  return engine;
}

async function agentqThroughput(q: Agentq, log: TaskLog, opts: Options, path: "library" | "http"): Promise<Throughput> {
  await resetTasks(q);
  log.reset();
  const enqueue = path === "library" ? enqueueLibrary : enqueueHttp;
  const cpu0 = cpuSnapshot();
  const t0 = now();
  let enqueuedAt = 0;
  await bounded(opts.tasks, opts.concurrency, async (i) => {
    await enqueue(q, i);
  });
  enqueuedAt = now() - t0;
  await log.changed.until(() => log.completed + log.other >= opts.tasks, 240_000, `${opts.tasks} agentq tasks (${path})`);
  const wallMs = now() - t0;
  const cpu = cpuSince(cpu0);
  if (log.other > 0) throw new Error(`${log.other} agentq tasks did not complete (${path})`);
  const [row] = await q.runtime.database.sql<{ completed: string; total: string; run_p50: number | null }[]>`
    select count(*) filter (where status = 'completed') as completed, count(*) as total,
           percentile_cont(0.5) within group (order by extract(epoch from completed_at - started_at) * 1000) as run_p50
    from background_tasks`;
  if (Number(row?.completed) !== opts.tasks || Number(row?.total) !== opts.tasks)
    throw new Error(`expected ${opts.tasks} completed rows, found ${row?.completed} of ${row?.total}`);
  return {
    system: "agentq",
    path: path === "library" ? "library (TaskService.enqueueRefresh)" : "HTTP (POST .../coverage/refresh?force=true)",
    tasks: opts.tasks,
    workers: opts.workers,
    wallMs,
    enqueuedMs: enqueuedAt,
    perSecond: opts.tasks / (wallMs / 1000),
    runP50Ms: row?.run_p50 ?? null,
    cpu,
  };
}

async function agentqWarmup(q: Agentq, log: TaskLog, n: number): Promise<void> {
  log.reset();
  await bounded(n, 8, async (i) => {
    await enqueueLibrary(q, i);
  });
  await bounded(n, 8, async (i) => {
    await enqueueHttp(q, i);
  });
  await log.changed.until(() => log.completed + log.other >= 2 * n, 60_000, "warm-up tasks");
}

async function agentqPickup(q: Agentq, log: TaskLog, count: number): Promise<{ db: Latency; client: Latency; run: Latency }> {
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

async function agentqCancel(q: Agentq, log: TaskLog, count: number): Promise<Latency[]> {
  await resetTasks(q);
  log.reset();
  const visible: number[] = [];
  const event: number[] = [];
  const answered: number[] = [];
  const headers = { "x-api-key": API_KEY };
  for (let i = 0; i < count; i++) {
    const id = await enqueueLibrary(q, i);
    await log.changed.until(() => log.started.has(id), 30_000, `task ${id} to run`);
    const t0 = now();
    const del = await fetch(`${q.base}/tasks/${id}`, { method: "DELETE", headers });
    await del.arrayBuffer();
    if (del.status !== 204) throw new Error(`DELETE answered ${del.status}`);
    answered.push(now() - t0);
    for (;;) {
      const res = await fetch(`${q.base}/tasks/${id}`, { headers });
      const body = (await res.json()) as { status?: string };
      if (body.status === "cancelled") break;
      if (body.status !== "running") throw new Error(`cancelled task ${id} reached ${body.status}`);
      if (now() - t0 > 10_000) throw new Error(`task ${id} not cancelled after 10 s`);
      await Bun.sleep(1);
    }
    visible.push(now() - t0);
    await log.changed.until(() => log.finished.has(id), 10_000, `task ${id} to finish`);
    const fin = log.finished.get(id)!;
    if (fin.outcome !== "cancelled") throw new Error(`task ${id} finished ${fin.outcome}, expected cancelled`);
    event.push(fin.at - t0);
  }
  return [
    { what: "agentq cancel: `DELETE /tasks/{id}` sent -> `GET /tasks/{id}` shows `cancelled`", samples: visible },
    { what: "agentq cancel: `DELETE` sent -> actor's `cancelled` message (row already written)", samples: event },
    { what: "agentq cancel: `DELETE` response time (204)", samples: answered },
  ];
}

// ---------------------------------------------------------------------------
// BullMQ

function bullConnection(redisUrl: string) {
  const u = new URL(redisUrl);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number(u.pathname.replace(/^\//, "") || 0),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    maxRetriesPerRequest: null,
  };
}

type Conn = ReturnType<typeof bullConnection>;

class BullEvents {
  readonly active = new Map<string, number>();
  readonly finished = new Map<string, { at: number; outcome: "completed" | "failed"; job: Job }>();
  completed = 0;
  failed = 0;
  readonly changed = new Signal();

  attach(worker: BullWorker) {
    worker.on("active", (job: Job) => {
      this.active.set(job.id!, now());
      this.changed.notify();
    });
    worker.on("completed", (job: Job) => {
      this.finished.set(job.id!, { at: now(), outcome: "completed", job });
      this.completed++;
      this.changed.notify();
    });
    worker.on("failed", (job: Job | undefined) => {
      if (job) this.finished.set(job.id!, { at: now(), outcome: "failed", job });
      this.failed++;
      this.changed.notify();
    });
    worker.on("error", (error: Error) => console.error(`bullmq worker error: ${error.message}`));
  }

  reset() {
    this.active.clear();
    this.finished.clear();
    this.completed = 0;
    this.failed = 0;
  }
}

async function bullWorkers(
  name: string,
  connection: Conn,
  count: number,
  processor: (job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>,
  events: BullEvents,
): Promise<BullWorker[]> {
  const workers = Array.from({ length: count }, () => new BullWorker(name, processor, { connection, prefix: BULL_PREFIX, concurrency: 1 }));
  for (const w of workers) events.attach(w);
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return workers;
}

/** W no-op BullMQ workers on one queue, kept across the throughput rounds and the pickup run. */
class BullNoop {
  private constructor(
    private readonly queue: Queue,
    private readonly workers: BullWorker[],
    private readonly events: BullEvents,
    private readonly opts: Options,
  ) {}

  static async start(connection: Conn, opts: Options): Promise<BullNoop> {
    const queue = new Queue("noop", { connection, prefix: BULL_PREFIX });
    const events = new BullEvents();
    const workers = await bullWorkers("noop", connection, opts.workers, async () => {}, events);
    const b = new BullNoop(queue, workers, events, opts);
    await bounded(2 * WARMUP, 8, async (i) => {
      await queue.add("noop", { i });
    });
    await events.changed.until(() => events.completed + events.failed >= 2 * WARMUP, 60_000, "BullMQ warm-up");
    return b;
  }

  async throughput(): Promise<Throughput> {
    const { queue, events, opts } = this;
    events.reset();
    const cpu0 = cpuSnapshot();
    const t0 = now();
    await bounded(opts.tasks, opts.concurrency, async (i) => {
      await queue.add("noop", { i });
    });
    const enqueuedMs = now() - t0;
    await events.changed.until(() => events.completed + events.failed >= opts.tasks, 240_000, `${opts.tasks} BullMQ jobs`);
    const wallMs = now() - t0;
    const cpu = cpuSince(cpu0);
    if (events.failed > 0) throw new Error(`${events.failed} BullMQ jobs failed`);
    return {
      system: "BullMQ",
      path: "Queue.add",
      tasks: opts.tasks,
      workers: opts.workers,
      wallMs,
      enqueuedMs,
      perSecond: opts.tasks / (wallMs / 1000),
      runP50Ms: null,
      cpu,
    };
  }

  async pickup(): Promise<{ job: Latency; client: Latency }> {
    const { queue, events, opts } = this;
    events.reset();
    const job: number[] = [];
    const client: number[] = [];
    for (let i = 0; i < opts.pickups; i++) {
      const t0 = now();
      const added = await queue.add("noop", { i });
      const id = added.id!;
      await events.changed.until(() => events.finished.has(id), 30_000, `BullMQ pickup job ${id}`);
      const fin = events.finished.get(id)!;
      const active = events.active.get(id);
      if (fin.outcome !== "completed" || active === undefined) throw new Error(`BullMQ pickup job ${id} did not complete`);
      client.push(active - t0);
      job.push((fin.job.processedOn ?? Number.NaN) - fin.job.timestamp);
    }
    return {
      job: { what: "BullMQ pickup, job: `processedOn - timestamp` (1 ms resolution)", samples: job },
      client: { what: "BullMQ pickup, client: `Queue.add` called -> worker `active` event", samples: client },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await this.queue.close();
  }
}

/**
 * BullMQ's cancel (Worker.cancelJob) reaches only jobs run by that Worker object,
 * in its process. The closest peer to DELETE-from-anywhere: a Redis pub/sub
 * channel every worker process listens to, relaying to worker.cancelJob; the
 * processor throws UnrecoverableError on abort, and the job ends `failed`.
 */
async function bullCancel(connection: Conn, redisUrl: string, opts: Options): Promise<Latency[]> {
  const queue = new Queue("sleep", { connection, prefix: BULL_PREFIX });
  const events = new BullEvents();
  const processor = async (_job: Job, _token?: string, signal?: AbortSignal) => {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, 60_000);
      signal?.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new UnrecoverableError(`cancelled: ${String(signal.reason)}`));
        },
        { once: true },
      );
    });
  };
  const workers = await bullWorkers("sleep", connection, opts.workers, processor, events);
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const publisher = new Redis(redisUrl, { maxRetriesPerRequest: null });
  subscriber.on("message", (_channel: string, jobId: string) => {
    for (const w of workers) w.cancelJob(jobId, "cancelled");
  });
  await subscriber.subscribe(BULL_CANCEL_CHANNEL);
  const relayed: number[] = [];
  const visible: number[] = [];
  try {
    for (let i = 0; i < opts.cancels; i++) {
      const added = await queue.add("sleep", { i }, { attempts: 1 });
      const id = added.id!;
      await events.changed.until(() => events.active.has(id), 30_000, `BullMQ job ${id} to run`);
      const t0 = now();
      await publisher.publish(BULL_CANCEL_CHANNEL, id);
      await events.changed.until(() => events.finished.has(id), 10_000, `BullMQ job ${id} to fail`);
      relayed.push(events.finished.get(id)!.at - t0);
      // What a client polling the job would see.
      for (;;) {
        const state = await queue.getJobState(id);
        if (state === "failed") break;
        if (now() - t0 > 10_000) throw new Error(`BullMQ job ${id} is ${state} 10 s after the cancel`);
        await Bun.sleep(1);
      }
      visible.push(now() - t0);
      if (events.finished.get(id)!.outcome !== "failed") throw new Error(`BullMQ job ${id} was not cancelled`);
    }
  } finally {
    subscriber.disconnect();
    publisher.disconnect();
    await Promise.all(workers.map((w) => w.close()));
    await queue.close();
  }
  return [
    { what: "BullMQ cancel: PUBLISH id -> `Worker.cancelJob` -> worker `failed` event", samples: relayed },
    { what: "BullMQ cancel: PUBLISH id -> `getJobState` shows `failed`", samples: visible },
  ];
}

// ---------------------------------------------------------------------------
// Redis hygiene: only our prefix, never anything else

async function deletePrefix(redis: Redis): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${REDIS_PREFIX}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== "0");
  return deleted;
}

// ---------------------------------------------------------------------------
// Machine and report

async function machineFacts(q: Agentq): Promise<Machine> {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  let memory = `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
    const kb = /^MemTotal:\s*(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
    if (kb) memory = `${(Number(kb) / 2 ** 20).toFixed(1)} GiB`;
  } catch {
    // not Linux
  }
  const { sql } = q.runtime.database;
  const [v] = await sql<{ server_version: string }[]>`show server_version`;
  const settings = await sql<{ name: string; setting: string }[]>`
    select name, current_setting(name) as setting from pg_settings
    where name in ('synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections')
    order by name`;
  const info = await q.runtime.redis.info("server");
  const persistence = await q.runtime.redis.info("persistence");
  const aof = /^aof_enabled:(\d)/m.exec(persistence)?.[1] === "1";
  let rdb = "unknown";
  try {
    const save = (await q.runtime.redis.config("GET", "save")) as string[];
    rdb = save[1] ? `save "${save[1]}"` : "no RDB snapshots";
  } catch {
    // CONFIG may be disabled
  }
  let bullmq = "unknown";
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../node_modules/bullmq/package.json", import.meta.url)), "utf8")) as { version: string };
    bullmq = pkg.version;
  } catch {
    // keep unknown
  }
  return {
    cpu,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memory,
    bun: Bun.version,
    postgres: v?.server_version ?? "unknown",
    pgSettings: settings.map((r) => `${r.name}=${r.setting}`).join(", "),
    redis: /^redis_version:(\S+)/m.exec(info)?.[1] ?? "unknown",
    redisPersistence: `${aof ? "AOF on" : "AOF off"}, ${rdb}`,
    bullmq,
    date: new Date().toISOString(),
  };
}

const line = (cells: string[]) => `| ${cells.join(" | ")} |`;

function throughputTable(rows: Throughput[], bull: Throughput): string[] {
  const header = [
    "system, enqueue path",
    "tasks",
    "workers",
    "tasks/s (median round)",
    "every round",
    "wall time",
    "all enqueued after",
    "run p50 (claim -> complete)",
    "CPU ms/task: bench process / its postgres backends / redis-server",
    "machine busy",
    "vs BullMQ",
  ];
  const body = [...rows, bull].map((r) => [
    `${r.system}, ${r.path}`,
    fmtInt(r.tasks),
    String(r.workers),
    `**${fmtRate(r.perSecond)}**`,
    (r.rounds ?? [r.perSecond]).map(fmtRate).join(", "),
    fmtMs(r.wallMs),
    fmtMs(r.enqueuedMs),
    r.runP50Ms === null ? "-" : fmtMs(r.runP50Ms),
    [r.cpu.self, r.cpu.postgres, r.cpu.redis].map((x) => ((x * 1000) / r.tasks).toFixed(2)).join(" / "),
    `${Math.round(r.cpu.machineBusy * 100)}%`,
    r === bull ? "1" : `**${(r.perSecond / bull.perSecond).toFixed(3)}**`,
  ]);
  return [line(header), line(header.map(() => "---")), ...body.map(line)];
}

function latencyTable(rows: Latency[]): string[] {
  const header = ["measure", "n", "p50", "p99", "max"];
  const body = rows.map((r) => [r.what, String(r.samples.length), `**${fmtMs(pct(r.samples, 0.5))}**`, fmtMs(pct(r.samples, 0.99)), fmtMs(Math.max(...r.samples))]);
  return [line(header), line(header.map(() => "---")), ...body.map(line)];
}

const ordinal = (n: number) => (n === 1 ? "" : n === 2 ? "2nd" : n === 3 ? "3rd" : `${n}th`);

const cpuMsPerTask = (r: Throughput) => ((r.cpu.self + r.cpu.postgres + r.cpu.redis) * 1000) / r.tasks;

/** What the CPU figures say about the throughput ceiling on this machine (computed, not asserted). */
function boundNotes(machine: Machine, rows: Throughput[], bull: Throughput): string[] {
  const out = [
    `CPU per task, summed over the three processes: ${rows.map((r) => `agentq ${r.path.split(" ")[0]} ${cpuMsPerTask(r).toFixed(2)} ms`).join(", ")};`,
    `BullMQ ${cpuMsPerTask(bull).toFixed(2)} ms. With ${machine.cores} cores, that alone caps agentq near`,
    `${rows.map((r) => fmtRate((machine.cores * 1000) / cpuMsPerTask(r))).join(" / ")} tasks/s (measured: ${rows.map((r) => fmtRate(r.perSecond)).join(" / ")}, with the machine`,
    `${rows.map((r) => `${Math.round(r.cpu.machineBusy * 100)}%`).join(" / ")} busy, other users' processes included). Of agentq's own process CPU, the split between the main thread`,
    "(client, HTTP server, supervisor), the actor threads, and the runtime's helper threads (JIT, GC, I/O) was:",
  ];
  for (const r of rows) {
    const c = r.cpu;
    const ms = (s: number) => ((s * 1000) / r.tasks).toFixed(2);
    out.push(`${r.path.split(" ")[0]}: main ${ms(c.mainThread)} ms, actors ${ms(c.workerThreads)} ms, helpers ${ms(c.helperThreads)} ms per task;`);
  }
  out[out.length - 1] = out[out.length - 1]!.replace(/;$/, ".");
  return out;
}

function docsSection(machine: Machine, opts: Options, throughput: Throughput[], bull: Throughput, latencies: Latency[]): string {
  return [
    SECTION_TITLE,
    "",
    "`bun run bench engine` (bench/engine.ts). One process holds everything: the agentq supervisor",
    `(\`startEngine\`, ${opts.workers} Bun Worker threads running the production actor and coverage handler), the`,
    "Elysia API listening on a real port, the client, and the BullMQ workers; PostgreSQL and Redis run",
    "on the same host. Each agentq task is a real `coverage_refresh` of an agent whose scope is one",
    "taxonomy node with no documents (tiny: every engine step, almost no coverage work), enqueued",
    `with \`force=true\` over ${AGENTS} such agents, ${opts.concurrency} enqueue calls in flight. A task counts when its row is`,
    "`completed` in PostgreSQL (the actor reports after the commit; the row count is checked).",
    `BullMQ ${machine.bullmq}: ${opts.workers} \`Worker\` instances with concurrency 1 and a no-op processor, one`,
    `\`Queue.add\` per job (${opts.concurrency} in flight), timed from the first add to the last \`completed\` event.`,
    `${opts.rounds} rounds, each measuring the three in turn (the system not measured sits idle in its blocking pop);`,
    "the table shows each one's median round. CPU per task is the CPU time used during that round by this",
    "process (all threads), by the PostgreSQL backends connected to the benchmark database, and by",
    "redis-server (shared with other users, so a floor of noise), divided by the tasks.",
    "",
    ...throughputTable(throughput, bull),
    "",
    ...boundNotes(machine, throughput, bull),
    "",
    `Latencies: pickup = ${opts.pickups} tasks one at a time (each waits for the previous to finish), all`,
    `workers idle in their blocking pop; cancel = ${opts.cancels} times: start a task whose handler sleeps`,
    "abortably (bench/workers/sleeper.ts), wait for `started`, then cancel it; the client re-polls every",
    "1 ms. BullMQ 5 has `Worker.cancelJob` (it aborts the processor's AbortSignal), but only for jobs of",
    "that Worker object in its own process; it has no cancel reaching a running job from another",
    "process and no `cancelled` state. Its peer here relays the id over Redis pub/sub to",
    "`Worker.cancelJob`; the processor throws `UnrecoverableError`, so the job ends `failed`.",
    `p99 is nearest-rank: with ${opts.cancels} samples it is the maximum, with ${opts.pickups} the ${ordinal(Math.ceil(opts.pickups / 100))} largest.`,
    "",
    ...latencyTable(latencies),
    "",
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory} RAM; Bun ${machine.bun}; PostgreSQL ${machine.postgres}`,
    `(${machine.pgSettings}); Redis ${machine.redis} (${machine.redisPersistence}: BullMQ's \`completed\` is`,
    "in memory only, agentq's is an fsynced commit); all on the same host, which other users' jobs",
    `shared during the run. Run ${machine.date}.`,
    "",
  ].join("\n");
}

function writeDocs(section: string): void {
  writeBenchmarkSection(SECTION_TITLE, section);
}

// ---------------------------------------------------------------------------

export async function run(args: string[]): Promise<number> {
  const opts = parseCommandLine(args, HELP, parseArgs);
  if (typeof opts === "number") return opts;
  const url = benchEngineDatabaseUrl();
  assertDedicatedDatabase(url);
  const redisUrl = process.env.REDIS_URL ?? DEFAULTS.redisUrl;
  const dbName = decodeURIComponent(new URL(url).pathname.slice(1));
  console.log(`engine benchmark: database ${dbName}, Redis prefix ${REDIS_PREFIX}, ${opts.workers} workers, ${opts.tasks} tasks per throughput run`);
  const started = now();
  await ensureDatabase(url);
  await migrateDatabase(url);

  benchDatabaseName = dbName;
  const q = await prepareAgentq(url, redisUrl);
  const removed = await deletePrefix(q.runtime.redis);
  if (removed > 0) console.log(`removed ${removed} leftover keys under ${REDIS_PREFIX}:`);
  const log = new TaskLog();
  const connection = bullConnection(redisUrl);
  let engine: Engine | null = null;
  let bull: BullNoop | null = null;
  try {
    // --- Throughput rounds and pickup: the production worker; BullMQ's no-op workers beside it.
    // Whichever system is not being measured is idle (blocked in its pop), not stopped.
    engine = await startAgentqEngine(q, opts.workers, log);
    await agentqWarmup(q, log, WARMUP);
    bull = await BullNoop.start(connection, opts);
    const runs: Record<"library" | "http" | "bull", Throughput[]> = { library: [], http: [], bull: [] };
    for (let r = 1; r <= opts.rounds; r++) {
      const lib = await agentqThroughput(q, log, opts, "library");
      runs.library.push(lib);
      const http = await agentqThroughput(q, log, opts, "http");
      runs.http.push(http);
      const b = await bull.throughput();
      runs.bull.push(b);
      console.log(
        `round ${r}/${opts.rounds}: agentq library ${fmtRate(lib.perSecond)} tasks/s, agentq HTTP ${fmtRate(http.perSecond)} tasks/s, BullMQ ${fmtRate(b.perSecond)} jobs/s`,
      );
    }
    const library = medianRound(runs.library);
    const http = medianRound(runs.http);
    const bullRun = medianRound(runs.bull);

    console.log(`pickup latency, ${opts.pickups} tasks one at a time, agentq then BullMQ ...`);
    const pickup = await agentqPickup(q, log, opts.pickups);
    const bullPickup = await bull.pickup();
    await bull.close();
    bull = null;
    await engine.stop();
    engine = null;

    // --- Cancel latency: agentq with the sleeping worker, then BullMQ's peer.
    console.log(`cancel latency, ${opts.cancels} running tasks, agentq then BullMQ ...`);
    engine = await startAgentqEngine(q, opts.workers, log, SLEEPER_WORKER);
    const cancel = await agentqCancel(q, log, opts.cancels);
    await engine.stop();
    engine = null;
    const bullCancels = await bullCancel(connection, redisUrl, opts);

    const machine = await machineFacts(q);
    const latencies = [pickup.db, pickup.client, pickup.run, bullPickup.job, bullPickup.client, ...cancel, ...bullCancels];
    console.log("");
    for (const l of throughputTable([library, http], bullRun)) console.log(l);
    console.log("");
    for (const l of latencyTable(latencies)) console.log(l);
    console.log("");
    console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory}; Bun ${machine.bun}; PostgreSQL ${machine.postgres}; Redis ${machine.redis}; BullMQ ${machine.bullmq}; ${machine.date}`);
    console.log(`postgres: ${machine.pgSettings}; redis persistence: ${machine.redisPersistence}`);
    for (const l of boundNotes(machine, [library, http], bullRun)) console.log(l);
    console.log(`whole run: ${fmtMs(now() - started)}`);
    if (opts.writeDocs) {
      writeDocs(docsSection(machine, opts, [library, http], bullRun, latencies));
      console.log(`\nwrote the "${SECTION_TITLE}" section of docs/benchmarks.md`);
    }
    return 0;
  } finally {
    if (bull) await bull.close().catch((e) => console.error(`BullMQ close failed: ${String(e)}`));
    if (engine) await engine.stop().catch((e) => console.error(`engine stop failed: ${String(e)}`));
    await q.stopServer().catch(() => {});
    await deletePrefix(q.runtime.redis).catch((e) => console.error(`could not clean ${REDIS_PREFIX}: ${String(e)}`));
    await q.runtime.close();
  }
}
