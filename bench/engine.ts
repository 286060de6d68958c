/**
 * Task-engine benchmark: agentq's engine (PostgreSQL truth + Redis dispatch + a supervisor
 * of Bun Worker threads) against BullMQ and Graphile Worker, in one run on one machine;
 * the results are ratios within the run.
 *
 *  1. Burn-down: N tiny tasks (default 20,000) already pending, then the workers start;
 *     timed from the start to the last durable completion. agentq: W workers x C
 *     (`startEngine({workers, concurrency})`); BullMQ: W `Worker`s of concurrency C;
 *     Graphile Worker: W `run()` instances of concurrency C, batched as its performance
 *     page sets it. The same jobs in flight (W x C) for all three.
 *  2. End to end over HTTP: `clients` callers POST refreshes to a real listening server
 *     while the engine runs, to the last durable completion; its rate is reported as a
 *     ratio to BullMQ's burn-down (and to BullMQ's own end to end with Queue.add).
 *  3. Pickup latency at low load (one task at a time): enqueue -> running.
 *  4. Cancel latency of a running task: in JavaScript (bench/workers/sleeper.ts) and blocked
 *     inside a PostgreSQL statement (bench/workers/pgSleeper.ts): DELETE -> GET shows
 *     `cancelled`, and DELETE -> pg_stat_activity no longer shows the statement running.
 *
 * CPU per task per process group comes from /proc; commits per task from pg_stat_database;
 * `--profile` adds one more burn-down round of agentq and Graphile Worker, after the measured
 * ones and out of the ratios, with pg_stat_user_tables, pg_stat_statements where the server has
 * it loaded, pg_stat_activity samples (bench/engine/stats.ts) and CPU profiles of agentq's threads.
 *
 * Everything runs in this process (supervisor threads, HTTP server, client, the peers'
 * workers), against its own databases (`agentq_bench_engine`, `agentq_bench_graphile`) and
 * its own Redis key prefix (`agentq-bench-engine`, deleted at start and end).
 */
import os from "node:os";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DEFAULTS } from "../src/config.ts";
import { ensureDatabase, migrateDatabase } from "../src/db/migrate.ts";
import type { Engine } from "../src/supervisor/engine.ts";
import type { RedisClient } from "../src/queue/redisClient.ts";
import { parseCommandLine, writeBenchmarkSection } from "./support.ts";
import { countBackendsOf, cpuMsPerTask, type CpuUse } from "./engine/cpu.ts";
import { StatsReader, type ActivitySample, type DbCounters, type StatementCounters, type TableCounters } from "./engine/stats.ts";
import { bullBurnDown, bullCancel, bullConnection, BullNoop, type BullSettings, type BurnResult, type E2eResult } from "./engine/bullmq.ts";
import {
  GRAPHILE_COMPLETE_BATCH_DELAY,
  GRAPHILE_FAIL_BATCH_DELAY,
  GRAPHILE_LOCAL_QUEUE,
  graphileBurnDown,
  graphileDatabaseUrl,
  graphilePoolSize,
  prepareGraphile,
  type GraphileBurn,
  type GraphileSettings,
} from "./engine/graphile.ts";
import {
  AGENTS,
  agentqBurnDown,
  agentqCancel,
  agentqHttp,
  agentqPgCancel,
  agentqPickup,
  agentqWarmup,
  agentqWarmBurnDown,
  WARM_ENGINE_WARMUP,
  type AgentqWarmBurn,
  PG_CANCEL_CAP_MS,
  prepareAgentq,
  startAgentqEngine,
  TaskLog,
  type Agentq,
  type AgentqBurn,
  type AgentqE2e,
  type PgCancel,
} from "./engine/agentq.ts";
import type { ProfileSummary } from "./engine/threadProfile.ts";
import { fmtInt, fmtMs, fmtRate, fmtRatio, now, ordinal, pct, table, type Latency } from "./engine/util.ts";
import { parseFlags, type IntFlags } from "./flags.ts";

// ---------------------------------------------------------------------------
// Settings

const REDIS_PREFIX = "agentq-bench-engine";
const BULL_PREFIX = `${REDIS_PREFIX}:bullmq`;
const BULL_CANCEL_CHANNEL = `${REDIS_PREFIX}:bullmq-cancel`;
/** Tasks (and jobs) run before anything is timed: JIT, connection pools, plans. */
const WARMUP = 150;
/** Tasks of the untimed warm-up burn-down of each system. */
const BURN_WARMUP = 300;
/** The claim cooldown of the extra end-to-end row: River's fetch cooldown is 100 ms; 25 ms measured a third more tasks/s over HTTP. */
const BENCH_CLAIM_COOLDOWN_MS = 25;
const SECTION_TITLE = "## Task engine";
const SLEEPER_WORKER = new URL("./workers/sleeper.ts", import.meta.url).href;
const PG_SLEEPER_WORKER = new URL("./workers/pgSleeper.ts", import.meta.url).href;

const SCENARIOS = ["burn", "http", "pickup", "cancel", "pgcancel"] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Options {
  burn: number;
  burnRounds: number;
  tasks: number;
  rounds: number;
  workers: number;
  concurrency: number;
  clients: number;
  pickups: number;
  cancels: number;
  profile: boolean;
  only: Set<Scenario>;
  writeDocs: boolean;
}

const HELP = `usage: bun run bench engine [--burn N] [--burn-rounds R] [--tasks N] [--rounds R] [--workers W]
                            [--concurrency C] [--clients K] [--pickups P] [--cancels K] [--profile]
                            [--only ${SCENARIOS.join(",")}] [--no-docs]

  --burn N         tasks already pending when the workers start, per burn-down (default 20000)
  --burn-rounds R  burn-down rounds, each measuring agentq, BullMQ and Graphile Worker in turn;
                   the median round of each is reported (default 3)
  --tasks N        tasks per end-to-end (HTTP) measurement (default 2000)
  --rounds R       end-to-end rounds, each measuring agentq over HTTP and BullMQ (default 3)
  --workers W      agentq worker threads / BullMQ Worker instances / Graphile Worker run() instances (default 4)
  --concurrency C  tasks each of them runs at once (default ${DEFAULTS.workerConcurrency}: agentq's workerConcurrency default)
  --clients K      enqueue requests in flight during the end-to-end runs (default 64)
  --pickups P      one-at-a-time tasks for the pickup latency (default 200)
  --cancels K      running tasks cancelled, for each cancel measurement (default 50)
  --profile        one more burn-down of agentq and Graphile Worker after the measured rounds, under
                   the profilers: pg_stat_activity every 10 ms, pg_stat_user_tables and (where the
                   server loads it) pg_stat_statements, CPU profiles of agentq's threads; the
                   ratios come from the measured rounds only
  --only LIST      run only these scenarios (comma-separated); docs are not written then
  --no-docs        do not rewrite the "${SECTION_TITLE}" section of docs/benchmarks.md

Databases: BENCH_ENGINE_DATABASE_URL, else database agentq_bench_engine on the server of
DATABASE_URL (default postgres://root@127.0.0.1:5432); BENCH_GRAPHILE_DATABASE_URL, else
agentq_bench_graphile on the same server. Both are created (and migrated) if missing and their
job tables truncated. Redis: REDIS_URL (default redis://127.0.0.1:6379/0); only keys under
"${REDIS_PREFIX}:" are written and deleted.`;

function parseArgs(args: string[]): Options | string {
  const o: Options = {
    burn: 20_000,
    burnRounds: 3,
    tasks: 2000,
    rounds: 3,
    workers: 4,
    concurrency: DEFAULTS.workerConcurrency,
    clients: 64,
    pickups: 200,
    cancels: 50,
    profile: false,
    only: new Set(SCENARIOS),
    writeDocs: true,
  };
  type IntKey = "burn" | "burnRounds" | "tasks" | "rounds" | "workers" | "concurrency" | "clients" | "pickups" | "cancels";
  const ints: IntFlags<IntKey> = {
    "--burn": ["burn", 1, 1_000_000],
    "--burn-rounds": ["burnRounds", 1, 20],
    "--tasks": ["tasks", 1, 1_000_000],
    "--rounds": ["rounds", 1, 20],
    "--workers": ["workers", 1, 64],
    "--concurrency": ["concurrency", 1, 256],
    "--clients": ["clients", 1, 1024],
    "--pickups": ["pickups", 1, 100_000],
    "--cancels": ["cancels", 1, 10_000],
  };
  const error = parseFlags(args, ints, (key, n) => (o[key] = n), (flag, value) => {
    if (flag === "--no-docs") return (o.writeDocs = false), 1;
    if (flag === "--profile") return (o.profile = true), 1;
    if (flag !== "--only") return 0;
    const list = (value ?? "").split(",").filter(Boolean);
    const bad = list.filter((s) => !(SCENARIOS as readonly string[]).includes(s));
    if (list.length === 0 || bad.length > 0) return `--only takes a comma-separated list of ${SCENARIOS.join(", ")}`;
    o.only = new Set(list as Scenario[]);
    return 2;
  });
  if (error) return error;
  return o;
}

export function benchEngineDatabaseUrl(env: Record<string, string | undefined> = process.env): string {
  if (env.BENCH_ENGINE_DATABASE_URL) return env.BENCH_ENGINE_DATABASE_URL;
  const u = new URL(env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  u.pathname = "/agentq_bench_engine";
  return u.toString();
}

const dbName = (u: string) => decodeURIComponent(new URL(u).pathname.replace(/^\//, ""));

/** The benchmark truncates tables: refuse the application's database and the coverage corpus. */
function assertDedicatedDatabase(url: string): void {
  const bench = dbName(url);
  const app = dbName(process.env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  if (["agentq", "postgres", "agentq_bench", app].includes(bench))
    throw new Error(`refusing to use database "${bench}" for the engine benchmark: it truncates tables; pick another BENCH_ENGINE_DATABASE_URL / BENCH_GRAPHILE_DATABASE_URL`);
}

// ---------------------------------------------------------------------------
// Results

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
  graphile: string;
  graphileSchema: string;
  /** The commit of src/ and workers/ measured, and whether they had uncommitted changes. */
  commit: string;
  date: string;
}

function engineCommit(): string {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const git = (...args: string[]) => Bun.spawnSync(["git", "-C", root, ...args]);
  const head = git("rev-parse", "--short", "HEAD");
  if (head.exitCode !== 0) return "unknown (not a git checkout)";
  const dirty = git("status", "--porcelain", "--", "src", "workers").stdout.toString().trim() !== "";
  return `${head.stdout.toString().trim()}${dirty ? " with uncommitted changes in src/ or workers/" : ""}`;
}

/** One system's burn-down, as reported (its median round, with every round's rate). */
interface BurnRow {
  system: string;
  config: string;
  inFlight: number;
  /** Most jobs running at once in the reported round, from the system's own events. */
  peakInFlight: number;
  tasks: number;
  wallMs: number;
  perSecond: number;
  rounds: number[];
  cpu: CpuUse;
  /** Null for BullMQ (no database). */
  db: DbCounters | null;
  redisCallsPerTask: number | null;
  note: string;
  tables: TableCounters[] | null;
  statements: StatementCounters[] | null;
  activity: { rows: ActivitySample[]; samples: number } | null;
}

interface E2eRow {
  system: string;
  tasks: number;
  clients: number;
  inFlight: number;
  peakInFlight: number;
  wallMs: number;
  enqueuedMs: number;
  perSecond: number;
  rounds: number[];
  runP50Ms: number | null;
  /** Enqueue -> claim, from the rows (agentq only). */
  wait: { p50: number; p99: number } | null;
  cpu: CpuUse;
}

/** An agentq end-to-end row: its median round, every round's rate, and the enqueue -> claim wait. */
function agentqE2eRow(system: string, opts: Options, runs: AgentqE2e[]): E2eRow {
  const x = median(runs);
  return {
    system,
    clients: opts.clients,
    inFlight: opts.workers * opts.concurrency,
    rounds: runs.map((r) => r.perSecond),
    ...x,
    wait: { p50: x.waitP50Ms, p99: x.waitP99Ms },
  };
}

/** The run with the median rate (the lower middle one for an even count). */
function median<T extends { perSecond: number }>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.perSecond - b.perSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

interface Results {
  machine: Machine;
  opts: Options;
  /** The command line's flags, for the docs. */
  args: string[];
  burn: {
    agentq: BurnRow;
    agentqWarm: BurnRow;
    bull: BurnRow;
    graphile: BurnRow;
    agentqRaw: AgentqBurn;
    graphileRaw: GraphileBurn;
    /**
     * With --profile: one more burn-down of agentq and of Graphile Worker, run under the profilers
     * after the measured rounds, so that the profilers' own cost is in none of the ratios.
     */
    profiled: { agentq: AgentqBurn; graphile: GraphileBurn } | null;
  } | null;
  /** `agentqCooldown`: the same HTTP load with a claim cooldown (AGENTQ_CLAIM_COOLDOWN_MS), beside the default. */
  e2e: { agentq: E2eRow; agentqCooldown: E2eRow | null; bull: E2eRow } | null;
  latencies: Latency[];
  pgCancel: PgCancel | null;
  pickupClient: Latency | null;
  pickupRows: Latency | null;
  statementsNote: string;
}

// ---------------------------------------------------------------------------
// Redis hygiene: only our prefix, never anything else

async function deletePrefix(redis: RedisClient): Promise<number> {
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
// Machine

async function machineFacts(q: Agentq, graphileSchema: string): Promise<Machine> {
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
    where name in ('synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections', 'commit_delay', 'shared_preload_libraries')
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
  const version = (pkg: string) => {
    try {
      return (JSON.parse(readFileSync(fileURLToPath(new URL(`../node_modules/${pkg}/package.json`, import.meta.url)), "utf8")) as { version: string }).version;
    } catch {
      return "unknown";
    }
  };
  return {
    cpu,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memory,
    bun: Bun.version,
    postgres: v?.server_version ?? "unknown",
    pgSettings: settings.map((r) => `${r.name}=${r.setting === "" ? "''" : r.setting}`).join(", "),
    redis: /^redis_version:(\S+)/m.exec(info)?.[1] ?? "unknown",
    redisPersistence: `${aof ? "AOF on" : "AOF off"}, ${rdb}`,
    bullmq: version("bullmq"),
    graphile: version("graphile-worker"),
    graphileSchema,
    commit: engineCommit(),
    date: new Date().toISOString(),
  };
}

// ---------------------------------------------------------------------------
// Report

const perTask = (x: number, tasks: number, digits = 2) => (x / tasks).toFixed(digits);
/** A statement's text on one line, cut to `n` characters. */
const oneLine = (query: string, n: number) => query.replace(/\s+/g, " ").slice(0, n).trim();

function statementTable(statements: readonly StatementCounters[], tasks: number): string[] {
  return table(
    ["statement", "calls/task", "rows/call", "ms/call", "ms/task"],
    statements.slice(0, 10).map((s) => [
      "`" + oneLine(s.query, 100).replaceAll("|", "\\|") + "`",
      perTask(s.calls, tasks, 3),
      (s.rows / s.calls).toFixed(1),
      (s.totalMs / s.calls).toFixed(2),
      (s.totalMs / tasks).toFixed(3),
    ]),
  );
}

/** The CPU profiles of agentq's threads in the profiled burn-down round (bench/engine/threadProfile.ts). */
function threadProfileLines(p: { workers: ProfileSummary; main: ProfileSummary }): string[] {
  const pct1 = (x: number) => `${(100 * x).toFixed(1)}%`;
  const part = (title: string, s: ProfileSummary) => [
    `${title} (${fmtInt(s.samples)} samples while running JavaScript), by area:`,
    "",
    ...table(["area", "share"], s.byArea.map((l) => [l.name, pct1(l.share)])),
    "",
    "Functions with the most self time:",
    "",
    ...table(["function", "share"], s.byFunction.map((l) => ["`" + l.name.replaceAll("|", "\\|") + "`", pct1(l.share)])),
    "",
  ];
  return [...part("CPU profile of agentq's worker threads, profiled round", p.workers), ...part("CPU profile of the main thread (supervisor, reconciler, the benchmark's own bookkeeping)", p.main)];
}

const cpuCells = (cpu: CpuUse, tasks: number) =>
  `${[cpu.self, cpu.postgres, cpu.redis].map((s) => ((s * 1000) / tasks).toFixed(2)).join(" / ")} = **${cpuMsPerTask(cpu, tasks).toFixed(2)}**`;

function burnTable(r: NonNullable<Results["burn"]>): string[] {
  const rows = [r.agentq, r.agentqWarm, r.bull, r.graphile];
  return table(
    [
      "system",
      "configuration",
      "jobs in flight: configured / most seen at once",
      "tasks",
      "tasks/s (median round)",
      "every round",
      "wall time",
      "vs BullMQ",
      "vs Graphile Worker",
      "CPU ms/task: bench process / its PostgreSQL backends / redis-server = total",
      "PostgreSQL server processes (shared), ms/task",
      "machine busy",
      "transactions committed/task",
      "Redis calls/task",
    ],
    rows.map((x) => [
      x.system,
      x.config,
      `${x.inFlight} / ${x.peakInFlight}`,
      fmtInt(x.tasks),
      `**${fmtRate(x.perSecond)}**`,
      x.rounds.map(fmtRate).join(", "),
      fmtMs(x.wallMs),
      x === r.bull ? "1" : `**${fmtRatio(x.perSecond / r.bull.perSecond)}**`,
      x === r.graphile ? "1" : fmtRatio(x.perSecond / r.graphile.perSecond),
      cpuCells(x.cpu, x.tasks),
      ((x.cpu.postgresServer * 1000) / x.tasks).toFixed(2),
      `${Math.round(x.cpu.machineBusy * 100)}%`,
      x.db ? perTask(x.db.commits, x.tasks, 3) : "-",
      x.redisCallsPerTask === null ? "-" : x.redisCallsPerTask.toFixed(2),
    ]),
  );
}

function e2eTable(r: NonNullable<Results["e2e"]>, bullBurn: BurnRow | null): string[] {
  return table(
    [
      "system, enqueue path",
      "tasks",
      "clients",
      "jobs in flight: configured / most seen at once",
      "tasks/s (median round)",
      "every round",
      "wall time",
      "all enqueued after",
      "run p50 (claim -> complete)",
      "wait p50 / p99 (enqueue -> claim)",
      "CPU ms/task: bench process / its PostgreSQL backends / redis-server = total",
      "machine busy",
      "vs BullMQ burn-down",
      "vs BullMQ end to end",
    ],
    [r.agentq, r.agentqCooldown, r.bull].flatMap((x) => (x ? [x] : [])).map((x) => [
      x.system,
      fmtInt(x.tasks),
      String(x.clients),
      `${x.inFlight} / ${x.peakInFlight}`,
      `**${fmtRate(x.perSecond)}**`,
      x.rounds.map(fmtRate).join(", "),
      fmtMs(x.wallMs),
      fmtMs(x.enqueuedMs),
      x.runP50Ms === null ? "-" : fmtMs(x.runP50Ms),
      x.wait ? `${fmtMs(x.wait.p50)} / ${fmtMs(x.wait.p99)}` : "-",
      cpuCells(x.cpu, x.tasks),
      `${Math.round(x.cpu.machineBusy * 100)}%`,
      bullBurn ? `**${fmtRatio(x.perSecond / bullBurn.perSecond)}**` : "-",
      x === r.bull ? "1" : fmtRatio(x.perSecond / r.bull.perSecond),
    ]),
  );
}

/** Which sample a nearest-rank p99 of n samples is. */
function rankText(n: number): string {
  const fromTop = n - Math.ceil(0.99 * n) + 1;
  return fromTop === 1 ? "the maximum" : `the ${ordinal(fromTop)} largest`;
}

function latencyTable(rows: Latency[]): string[] {
  const at = (l: Latency, v: number) => (l.capMs !== undefined && v >= l.capMs ? `>= ${fmtMs(l.capMs)} (cut off)` : fmtMs(v));
  return table(
    ["measure", "n", "p50", "p99", "max"],
    rows.map((r) => [r.what, String(r.samples.length), `**${at(r, pct(r.samples, 0.5))}**`, at(r, pct(r.samples, 0.99)), at(r, Math.max(...r.samples))]),
  );
}

interface Target {
  target: string;
  goal: string;
  measured: string;
  met: boolean | null;
}

function targets(r: Results): Target[] {
  const out: Target[] = [];
  const b = r.burn;
  out.push({
    target: "burn-down, agentq vs BullMQ with the same jobs in flight",
    goal: ">= 1.0x",
    measured: b ? `${fmtRatio(b.agentq.perSecond / b.bull.perSecond)}x (${fmtRate(b.agentq.perSecond)} vs ${fmtRate(b.bull.perSecond)} tasks/s)` : "not run",
    met: b ? b.agentq.perSecond >= b.bull.perSecond : null,
  });
  out.push({
    target: "end to end over HTTP vs BullMQ's burn-down",
    goal: ">= 0.3x",
    measured: r.e2e && b ? `${fmtRatio(r.e2e.agentq.perSecond / b.bull.perSecond)}x (${fmtRate(r.e2e.agentq.perSecond)} tasks/s)` : "not run",
    met: r.e2e && b ? r.e2e.agentq.perSecond >= 0.3 * b.bull.perSecond : null,
  });
  const cpu = b ? cpuMsPerTask(b.agentq.cpu, b.agentq.tasks) : Number.NaN;
  out.push({
    target: "CPU per task across processes in the burn-down (bench process + its backends + redis-server)",
    goal: "<= 1.0 ms",
    measured: b ? `${cpu.toFixed(2)} ms` : "not run",
    met: b ? cpu <= 1.0 : null,
  });
  const pc = r.pickupClient;
  out.push({
    target: "pickup p50 at low load (enqueue called -> supervisor hears `started`)",
    goal: "< 5 ms",
    measured: pc ? `${fmtMs(pct(pc.samples, 0.5))} (rows, INSERT -> claim: ${r.pickupRows ? fmtMs(pct(r.pickupRows.samples, 0.5)) : "n/a"})` : "not run",
    met: pc ? pct(pc.samples, 0.5) < 5 : null,
  });
  const pg = r.pgCancel;
  out.push({
    target: "cancel of a task blocked in PostgreSQL: DELETE sent -> GET shows `cancelled`, p99",
    goal: "< 50 ms",
    measured: pg ? fmtMs(pct(pg.visible.samples, 0.99)) : "not run",
    met: pg ? pct(pg.visible.samples, 0.99) < 50 : null,
  });
  out.push({
    target: "same cancel: the backend no longer runs the statement (pg_stat_activity)",
    goal: "within 100 ms, every sample",
    measured: pg
      ? `p99 ${pct(pg.backend.samples, 0.99) >= PG_CANCEL_CAP_MS ? `>= ${fmtMs(PG_CANCEL_CAP_MS)}` : fmtMs(pct(pg.backend.samples, 0.99))}; ${pg.over100} of ${pg.backend.samples.length} over 100 ms` +
        (pg.terminated > 0 ? `, ${pg.terminated} still running at ${fmtMs(PG_CANCEL_CAP_MS)} (terminated by the benchmark)` : "")
      : "not run",
    met: pg ? pg.over100 === 0 : null,
  });
  return out;
}

function targetTable(ts: Target[]): string[] {
  return table(
    ["target", "goal", "measured", "met"],
    ts.map((t) => [t.target, t.goal, t.measured, t.met === null ? "-" : t.met ? "**yes**" : "**no**"]),
  );
}

/** Per task figures of what the database did in the median burn-down round of each system. */
function profileTable(b: NonNullable<Results["burn"]>): string[] {
  const rows = [b.agentq, b.graphile].filter((x) => x.db);
  return table(
    ["system", "transactions committed/task", "rollbacks/task", "rows inserted / updated / deleted per task", "rows fetched/task", "WAL records/task", "WAL bytes/task", "WAL fsyncs/task (cluster-wide)"],
    rows.map((x) => {
      const d = x.db!;
      return [
        x.system,
        perTask(d.commits, x.tasks, 3),
        perTask(d.rollbacks, x.tasks, 3),
        [d.inserted, d.updated, d.deleted].map((n) => perTask(n, x.tasks)).join(" / "),
        perTask(d.fetched, x.tasks, 1),
        perTask(d.walRecords, x.tasks, 1),
        perTask(d.walBytes, x.tasks, 0),
        perTask(d.walSyncs, x.tasks, 3),
      ];
    }),
  );
}

/** The runtime's helper threads, by kind: how much is the JIT compiling and how much the collector. */
function helperSplit(cpu: CpuUse, tasks: number): string {
  const named = cpu.helpersByName.filter(([, seconds]) => (seconds * 1000) / tasks >= 0.005);
  if (named.length === 0) return "none above 0.005 ms";
  return named.map(([name, seconds]) => `${name} ${((seconds * 1000) / tasks).toFixed(3)}`).join(", ") + " ms per task";
}

function threadSplit(x: BurnRow | E2eRow, tasks: number): string {
  const ms = (s: number) => ((s * 1000) / tasks).toFixed(2);
  return `main thread ${ms(x.cpu.mainThread)}, Worker threads ${ms(x.cpu.workerThreads)}, runtime helper threads (JIT, GC, I/O) ${ms(x.cpu.helperThreads)} ms per task`;
}

function activityTable(a: { rows: ActivitySample[]; samples: number }): string[] {
  const byRole = new Map<string, number>();
  for (const r of a.rows) byRole.set(r.role, (byRole.get(r.role) ?? 0) + r.samples);
  return table(
    ["backends", "state", "wait event", "share of that role's backend samples", "backends busy in it, on average"],
    a.rows
      .filter((r) => r.samples / (byRole.get(r.role) ?? 1) >= 0.01)
      .slice(0, 14)
      .map((r) => [r.role, r.state, r.wait, `${Math.round((100 * r.samples) / (byRole.get(r.role) ?? 1))}%`, (r.samples / a.samples).toFixed(2)]),
  );
}

/** What the figures say limits agentq's burn-down (computed from this run's figures, not asserted). */
function limitNotes(r: Results): string[] {
  const b = r.burn;
  if (!b) return [];
  const a = b.agentq;
  const cores = r.machine.cores;
  const total = cpuMsPerTask(a.cpu, a.tasks);
  const cap = (cores * 1000) / total;
  const split = [
    ["bench process", (a.cpu.self * 1000) / a.tasks],
    ["its PostgreSQL backends", (a.cpu.postgres * 1000) / a.tasks],
    ["redis-server", (a.cpu.redis * 1000) / a.tasks],
  ] as const;
  const top = [...split].sort((x, y) => y[1] - x[1])[0]!;
  const busy = Math.round(a.cpu.machineBusy * 100);
  const out = [
    `agentq's burn-down used ${total.toFixed(2)} ms of CPU per task (${split.map(([n, v]) => `${n} ${v.toFixed(2)}`).join(", ")});`,
    `on ${cores} cores that alone caps it near ${fmtRate(cap)} tasks/s; it ran ${fmtRate(a.perSecond)} tasks/s (${Math.round((100 * a.perSecond) / cap)}% of that cap) with the machine ${busy}% busy,`,
    `other users' processes included. BullMQ needed ${cpuMsPerTask(b.bull.cpu, b.bull.tasks).toFixed(2)} ms per job and Graphile Worker ${cpuMsPerTask(b.graphile.cpu, b.graphile.tasks).toFixed(2)} ms.`,
  ];
  if (busy >= 85 || a.perSecond >= 0.8 * cap)
    out.push(`So the burn-down is CPU-bound: to reach BullMQ's ${fmtRate(b.bull.perSecond)} tasks/s on this machine agentq would need about ${((cores * 1000) / b.bull.perSecond).toFixed(2)} ms per task, and the largest share is the ${top[0]} (${top[1].toFixed(2)} ms).`);
  else
    out.push(`The machine had idle CPU, so the burn-down is not CPU-bound: it waits (round trips, commits, one task at a time per slot); the pg_stat_activity samples (--profile) show where the backends wait.`);
  if (a.db)
    out.push(
      `Its database committed ${perTask(a.db.commits, a.tasks, 2)} transactions per task (read-only statements included; ${perTask(a.db.walSyncs, a.tasks, 2)} WAL fsyncs per task, cluster-wide) ` +
        `against Graphile Worker's ${b.graphile.db ? perTask(b.graphile.db.commits, b.graphile.tasks, 3) : "?"} per job (${b.graphile.db ? perTask(b.graphile.db.walSyncs, b.graphile.tasks, 3) : "?"} fsyncs), whose fetches and completions are batched.`,
    );
  out.push(`The most agentq tasks seen running at once was ${a.peakInFlight} (configured: ${a.inFlight}); its first claim came ${fmtMs(b.agentqRaw.firstClaimMs)} after \`startEngine\` was called.`);
  out.push(`Of agentq's own process: ${threadSplit(a, a.tasks)}; the helper threads by name: ${helperSplit(a.cpu, a.tasks)}.`);
  const w = b.agentqWarm;
  out.push(
    `With its supervisor already running and warm (${fmtInt(WARM_ENGINE_WARMUP)} tasks run first, so each Worker VM has compiled the hot path), agentq ran ${fmtRate(w.perSecond)} tasks/s, ` +
      `**${fmtRatio(w.perSecond / b.bull.perSecond)}x** BullMQ, at ${cpuCells(w.cpu, w.tasks)} ms of CPU per task (${threadSplit(w, w.tasks)}; helpers: ${helperSplit(w.cpu, w.tasks)}).`,
  );
  if (b.profiled) {
    const pa = b.profiled.agentq;
    out.push(
      `Under the profilers (one more round, after the measured ones; the tables below come from it) agentq ran ${fmtRate(pa.perSecond)} tasks/s at ${cpuMsPerTask(pa.cpu, pa.tasks).toFixed(2)} ms of CPU per task.`,
    );
  }
  if (a.statements && a.statements.length > 0) {
    const exec = a.statements.reduce((n, st) => n + st.totalMs, 0);
    const tops = a.statements.slice(0, 3).map((st) => `${oneLine(st.query, 40)}... ${(st.totalMs / a.tasks).toFixed(3)} ms (${(st.rows / st.calls).toFixed(0)} rows a call)`);
    out.push(`Statement execution, per task (pg_stat_statements, waits for row locks and CPU included): ${(exec / a.tasks).toFixed(3)} ms in all; the largest: ${tops.join("; ")}.`);
  }
  const profiles = b.profiled?.agentq.threadProfiles;
  if (profiles && profiles.workers.samples > 0)
    out.push(`The worker threads' CPU profile by area: ${profiles.workers.byArea.slice(0, 5).map((l) => `${l.name} ${(100 * l.share).toFixed(0)}%`).join(", ")} (tables below).`);
  return out;
}

function docsSection(r: Results): string {
  const { machine, opts } = r;
  const inFlight = opts.workers * opts.concurrency;
  const lines = [
    SECTION_TITLE,
    "",
    "`bun run bench engine` (bench/engine.ts and bench/engine/). One process holds everything: the agentq supervisor",
    `(\`startEngine\`, ${opts.workers} Bun Worker threads running the production actor and coverage handler, \`concurrency: ${opts.concurrency}\`), the`,
    "Elysia API listening on a real port, the client, and the peers' workers; PostgreSQL and Redis run",
    "on the same host. Each agentq task is a real `coverage_refresh` of an agent whose scope is one",
    `taxonomy node with no documents (tiny: every engine step, almost no coverage work), over ${AGENTS} such agents;`,
    "it counts when its row is `completed` in PostgreSQL (the actor reports after the commit; the rows are checked).",
    "The peers run no-op jobs.",
    "",
    `This run: \`bun run bench engine${r.args.length > 0 ? ` ${r.args.join(" ")}` : ""}\` on commit ${machine.commit}.` +
      (opts.profile ? " `--profile` adds one more burn-down of agentq and of Graphile Worker after the measured rounds, run under the profilers: pg_stat_activity sampled every 10 ms, pg_stat_statements and pg_stat_user_tables read around it, and for agentq CPU profiles of its worker threads and main thread (sampled every 0.5 ms). The profile tables below come from that round; the ratios do not." : ""),
    "",
    "Targets (issue 9):",
    "",
    ...targetTable(targets(r)),
    "",
    "### Burn-down",
    "",
    `${fmtInt(opts.burn)} tasks are already pending when the workers start; timed from the start to the last durable completion,`,
    `with ${inFlight} jobs in flight for each system (${opts.workers} x ${opts.concurrency}). Rounds: ${opts.burnRounds}, each measuring the three in turn after an untimed`,
    `warm-up burn-down of ${BURN_WARMUP}; the table shows each one's median round.`,
    "",
    `- **agentq**: tasks written first through the library path (\`TaskService.enqueueRefresh\`, 256 calls in flight, group-committed`,
    `  INSERTs, ZADD to the Redis queue) with no supervisor running; then \`startEngine(runtime, {workers: ${opts.workers}, concurrency: ${opts.concurrency}})\`.`,
    `  The time includes spawning the worker threads.`,
    `- **agentq, supervisor already running (warm)**: not the issue's measurement, the steady state of a long-lived supervisor. The engine is started`,
    `  and runs ${fmtInt(WARM_ENGINE_WARMUP)} tasks first; then the ${fmtInt(opts.burn)} tasks are written pending (the same group-committed INSERTs) without being dispatched,`,
    `  and ZADDed in one pipeline; timed from that pipeline to the last durable completion. Each Bun Worker is a JavaScript VM of its own:`,
    `  the cold burn-down's fresh threads compile the hot path anew (the JITWorker threads below), which the warm one has done already.`,
    `- **BullMQ ${machine.bullmq}**: \`Queue.addBulk\` (1,000 per call), then ${opts.workers} \`Worker\` instances with \`concurrency: ${opts.concurrency}\`, default options,`,
    "  timed to the last `completed` event (BullMQ's completion is a Redis write, in memory: Redis here has no AOF).",
    `- **Graphile Worker ${machine.graphile}** (schema ${machine.graphileSchema}, own database \`agentq_bench_graphile\` on the same server): \`addJobs\` (2,000 per call), then ${opts.workers}`,
    `  \`run()\` instances with \`concurrency: ${opts.concurrency}\`, \`maxPoolSize: ${graphilePoolSize(opts.concurrency)}\` (concurrency + 1), \`preset.worker.localQueue: {size: ${GRAPHILE_LOCAL_QUEUE}}\`,`,
    `  \`completeJobBatchDelay: ${GRAPHILE_COMPLETE_BATCH_DELAY}\`, \`failJobBatchDelay: ${GRAPHILE_FAIL_BATCH_DELAY}\` (the batching settings of its performance page,`,
    "  https://worker.graphile.org/docs/performance), prepared statements on (its default). Its `job:complete` event fires before the batched",
    "  delete commits, so it is timed until its jobs table is empty.",
    "",
    "CPU per task is the CPU time used during the measured interval by this process (all threads), by the",
    "PostgreSQL backends connected to the benchmark's databases, and by redis-server (shared with other users: a",
    "floor of noise), divided by the tasks; PostgreSQL's server processes (walwriter, checkpointer, ...) are shown",
    "apart, being shared with the server's other databases. Transactions committed per task: `pg_stat_database.xact_commit`",
    "of the system's database over the interval (counters settled before and after: see bench/engine/stats.ts); a",
    "read-only statement outside a transaction counts as one too. WAL fsyncs per task (`pg_stat_wal.wal_sync`, the whole",
    "server) tell how many of them had to wait for the disk. \"Most seen at once\" counts running jobs from each system's",
    "own events (agentq: the supervisor's `task_started` / `task_finished`).",
    "",
  ];
  if (r.burn) {
    lines.push(...burnTable(r.burn), "");
    lines.push("What the database did per task (median round):", "", ...profileTable(r.burn), "");
    if (r.burn.bull.redisCallsPerTask !== null) {
      const top = (x: AgentqBurn | BurnResult) => x.redisTop.slice(0, 6).map(([c, n]) => `${c} ${(n / x.tasks).toFixed(2)}`).join(", ");
      lines.push(`Redis calls per task: agentq ${r.burn.agentq.redisCallsPerTask!.toFixed(2)} (${top(r.burn.agentqRaw)}); BullMQ ${r.burn.bull.redisCallsPerTask.toFixed(2)}.`, "");
    }
    lines.push("**What limits agentq's burn-down.**", ...limitNotes(r), "");
    lines.push(`Profile: ${r.statementsNote || "run with `--profile` for pg_stat_activity samples, per-table counters and pg_stat_statements (where loaded)"}.`, "");
    if (r.burn.agentq.activity) {
      lines.push(
        `pg_stat_activity of agentq's backends during its profiled burn-down round, sampled every 10 ms (${fmtInt(r.burn.agentq.activity.samples)} samples):`,
        "",
        ...activityTable(r.burn.agentq.activity),
        "",
      );
    }
    if (r.burn.graphile.activity) {
      lines.push(`The same for Graphile Worker (${fmtInt(r.burn.graphile.activity.samples)} samples):`, "", ...activityTable(r.burn.graphile.activity), "");
    }
    if (r.burn.agentq.tables) {
      lines.push(
        "Per table, agentq's profiled round (pg_stat_user_tables, per task):",
        "",
        ...table(
          ["table", "seq scans", "index scans", "inserted", "updated (HOT)", "deleted"],
          r.burn.agentq.tables.map((t) => [
            t.table,
            perTask(t.seqScan, r.burn!.agentq.tasks),
            perTask(t.idxScan, r.burn!.agentq.tasks),
            perTask(t.inserted, r.burn!.agentq.tasks),
            `${perTask(t.updated, r.burn!.agentq.tasks)} (${perTask(t.hotUpdated, r.burn!.agentq.tasks)})`,
            perTask(t.deleted, r.burn!.agentq.tasks),
          ]),
        ),
        "",
      );
    }
    if (r.burn.agentq.statements) {
      lines.push("Statements, agentq's profiled round (pg_stat_statements; execution time, which includes waits for row locks):", "", ...statementTable(r.burn.agentq.statements, r.burn.agentq.tasks), "");
    }
    const profiles = r.burn.profiled?.agentq.threadProfiles;
    if (profiles) lines.push(...threadProfileLines(profiles), "");
  }
  if (r.e2e) {
    lines.push(
      "### End to end over HTTP",
      "",
      `${opts.clients} clients POST \`/api/v1/agents/{id}/coverage/refresh?force=true\` to the listening server while the engine runs (${opts.tasks} tasks),`,
      "to the last durable completion; the API's own work (auth, validation, the INSERT's group commit, ZADD,",
      `queue position) is included. BullMQ's peer: ${opts.clients} callers of \`Queue.add\`, ${opts.workers} Workers x ${opts.concurrency}. Rounds: ${opts.rounds}, median shown.`,
      `The second agentq row is the same load on an engine started with a claim cooldown of ${BENCH_CLAIM_COOLDOWN_MS} ms (\`AGENTQ_CLAIM_COOLDOWN_MS\`, off by default):`,
      "while an actor runs tasks it claims at most once per cooldown, so tasks sent one by one are claimed, measured and settled",
      "in batches; the wait column (enqueue -> claim, from the rows) shows what that costs. The targets use the first row.",
      "",
      ...e2eTable(r.e2e, r.burn?.bull ?? null),
      "",
      `Of agentq's own process (HTTP): ${threadSplit(r.e2e.agentq, r.e2e.agentq.tasks)}.` +
        (r.e2e.agentqCooldown ? ` With the claim cooldown: ${threadSplit(r.e2e.agentqCooldown, r.e2e.agentqCooldown.tasks)}.` : ""),
      "",
    );
  }
  lines.push(
    "### Latency",
    "",
    `Pickup = ${opts.pickups} tasks one at a time (each waits for the previous to finish), all workers idle in their blocking pop.`,
    `Cancel = ${opts.cancels} times: start a task, wait for \`started\`, then DELETE it; the client re-polls GET every 1 ms.`,
    "Two handlers: one sleeping abortably in JavaScript (bench/workers/sleeper.ts), and one blocked inside",
    "PostgreSQL in `select pg_sleep(30)` issued through the handler's database (bench/workers/pgSleeper.ts), whose",
    "backend is watched in pg_stat_activity every 2 ms from a separate connection; a backend still running the",
    `statement ${fmtMs(PG_CANCEL_CAP_MS)} after the DELETE is counted at that cut-off and terminated by the benchmark.`,
    "BullMQ 5 has `Worker.cancelJob` (it aborts the processor's AbortSignal), but only for jobs of",
    "that Worker object in its own process; it has no cancel reaching a running job from another",
    "process and no `cancelled` state. Its peer here relays the id over Redis pub/sub to",
    "`Worker.cancelJob`; the processor throws `UnrecoverableError`, so the job ends `failed`.",
    `p99 is nearest-rank: with ${opts.cancels} samples it is ${rankText(opts.cancels)}, with ${opts.pickups} ${rankText(opts.pickups)}.`,
    "",
    ...latencyTable(r.latencies),
    "",
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory} RAM; Bun ${machine.bun}; PostgreSQL ${machine.postgres}`,
    `(${machine.pgSettings}); Redis ${machine.redis} (${machine.redisPersistence}: BullMQ's \`completed\` is`,
    "in memory only; agentq's and Graphile Worker's are fsynced commits); all on the same host, which other users' jobs",
    `shared during the run. Run ${machine.date}.`,
    "",
  );
  return lines.join("\n");
}

// ---------------------------------------------------------------------------

export async function run(args: string[]): Promise<number> {
  const opts = parseCommandLine(args, HELP, parseArgs);
  if (typeof opts === "number") return opts;
  const url = benchEngineDatabaseUrl();
  const gUrl = graphileDatabaseUrl(url);
  assertDedicatedDatabase(url);
  assertDedicatedDatabase(gUrl);
  const redisUrl = process.env.REDIS_URL ?? DEFAULTS.redisUrl;
  const database = dbName(url);
  const gDatabase = dbName(gUrl);
  if (gDatabase === database) throw new Error("the Graphile Worker database must differ from agentq's benchmark database");
  const inFlight = opts.workers * opts.concurrency;
  console.log(
    `engine benchmark: databases ${database} and ${gDatabase}, Redis prefix ${REDIS_PREFIX}; ${opts.workers} workers x concurrency ${opts.concurrency} = ${inFlight} in flight; scenarios ${[...opts.only].join(", ")}`,
  );
  const started = now();
  await ensureDatabase(url);
  await migrateDatabase(url);
  countBackendsOf(database, gDatabase);
  const q = await prepareAgentq(url, redisUrl, REDIS_PREFIX);
  const stats = new StatsReader(url);
  const removed = await deletePrefix(q.runtime.redis);
  if (removed > 0) console.log(`removed ${removed} leftover keys under ${REDIS_PREFIX}:`);
  const log = new TaskLog();
  const bullSettings: BullSettings = {
    connection: bullConnection(redisUrl),
    redis: q.runtime.redis,
    prefix: BULL_PREFIX,
    workers: opts.workers,
    concurrency: opts.concurrency,
  };
  const gSettings: GraphileSettings = { url: gUrl, database: gDatabase, workers: opts.workers, concurrency: opts.concurrency };
  let engine: Engine | null = null;
  let bull: BullNoop | null = null;
  const results: Results = {
    machine: undefined as unknown as Machine,
    opts,
    args,
    burn: null,
    e2e: null,
    latencies: [],
    pgCancel: null,
    pickupClient: null,
    pickupRows: null,
    statementsNote: "",
  };
  try {
    let graphileSchema = "not run";
    // --- Burn-down: N pending first, then the workers start. The other systems are stopped.
    if (opts.only.has("burn")) {
      graphileSchema = `migration ${await prepareGraphile(gSettings)}`;
      const burnSettings = { workers: opts.workers, concurrency: opts.concurrency, stats, profile: opts.profile };
      console.log(`burn-down warm-up (${BURN_WARMUP} tasks each) ...`);
      await agentqBurnDown(q, burnSettings, BURN_WARMUP, false);
      await bullBurnDown(bullSettings, BURN_WARMUP, "burn-warmup");
      await graphileBurnDown(gSettings, stats, BURN_WARMUP, false);
      const runs = { agentq: [] as AgentqBurn[], agentqWarm: [] as AgentqWarmBurn[], bull: [] as BurnResult[], graphile: [] as GraphileBurn[] };
      const measured = { ...burnSettings, profile: false };
      for (let round = 1; round <= opts.burnRounds; round++) {
        const a = await agentqBurnDown(q, measured, opts.burn);
        runs.agentq.push(a);
        const b = await bullBurnDown(bullSettings, opts.burn, `burn-${round}`);
        runs.bull.push(b);
        const g = await graphileBurnDown(gSettings, stats, opts.burn, false);
        runs.graphile.push(g);
        const w = await agentqWarmBurnDown(q, measured, opts.burn);
        runs.agentqWarm.push(w);
        console.log(
          `burn-down round ${round}/${opts.burnRounds}: agentq ${fmtRate(a.perSecond)} tasks/s (preload ${fmtMs(a.preloadMs)}, first claim after ${fmtMs(a.firstClaimMs)}, ` +
            `${(a.db.commits / a.tasks).toFixed(2)} commits/task, ${cpuMsPerTask(a.cpu, a.tasks).toFixed(2)} CPU ms/task), ` +
            `agentq with its supervisor already warm ${fmtRate(w.perSecond)} tasks/s (${cpuMsPerTask(w.cpu, w.tasks).toFixed(2)} CPU ms/task), ` +
            `BullMQ ${fmtRate(b.perSecond)} jobs/s (${cpuMsPerTask(b.cpu, b.tasks).toFixed(2)} CPU ms/job), ` +
            `Graphile Worker ${fmtRate(g.perSecond)} jobs/s (handlers done after ${fmtMs(g.handlersDoneMs)}, ${(g.db.commits / g.tasks).toFixed(3)} commits/job, ${cpuMsPerTask(g.cpu, g.tasks).toFixed(2)} CPU ms/job)`,
        );
      }
      const a = median(runs.agentq);
      const b = median(runs.bull);
      const g = median(runs.graphile);
      const w = median(runs.agentqWarm);
      let profiled: { agentq: AgentqBurn; graphile: GraphileBurn } | null = null;
      if (opts.profile) {
        const pa = await agentqBurnDown(q, burnSettings, opts.burn);
        const pg = await graphileBurnDown(gSettings, stats, opts.burn, true);
        profiled = { agentq: pa, graphile: pg };
        console.log(
          `profiled burn-down (not in the ratios): agentq ${fmtRate(pa.perSecond)} tasks/s (${cpuMsPerTask(pa.cpu, pa.tasks).toFixed(2)} CPU ms/task), ` +
            `Graphile Worker ${fmtRate(pg.perSecond)} jobs/s (${cpuMsPerTask(pg.cpu, pg.tasks).toFixed(2)} CPU ms/job)`,
        );
      }
      results.burn = {
        agentqRaw: a,
        graphileRaw: g,
        profiled,
        agentqWarm: {
          system: "agentq, supervisor already running (warm)",
          config: `startEngine, ${opts.workers} workers x concurrency ${opts.concurrency}, after ${fmtInt(WARM_ENGINE_WARMUP)} tasks`,
          inFlight,
          peakInFlight: w.peakInFlight,
          tasks: w.tasks,
          wallMs: w.wallMs,
          perSecond: w.perSecond,
          rounds: runs.agentqWarm.map((x) => x.perSecond),
          cpu: w.cpu,
          db: null,
          redisCallsPerTask: null,
          note: "",
          tables: null,
          statements: null,
          activity: null,
        },
        agentq: {
          system: "agentq",
          config: `startEngine, ${opts.workers} workers x concurrency ${opts.concurrency}`,
          inFlight,
          peakInFlight: a.peakInFlight,
          tasks: a.tasks,
          wallMs: a.wallMs,
          perSecond: a.perSecond,
          rounds: runs.agentq.map((x) => x.perSecond),
          cpu: a.cpu,
          db: a.db,
          redisCallsPerTask: a.redisCallsPerTask,
          note: `first claim ${fmtMs(a.firstClaimMs)} after start`,
          tables: profiled?.agentq.tables ?? null,
          statements: profiled?.agentq.statements ?? null,
          activity: profiled?.agentq.activity ?? null,
        },
        bull: {
          system: "BullMQ",
          config: `${opts.workers} Worker x concurrency ${opts.concurrency}`,
          inFlight,
          peakInFlight: b.peakInFlight,
          tasks: b.tasks,
          wallMs: b.wallMs,
          perSecond: b.perSecond,
          rounds: runs.bull.map((x) => x.perSecond),
          cpu: b.cpu,
          db: null,
          redisCallsPerTask: b.redisCallsPerTask,
          note: "",
          tables: null,
          statements: null,
          activity: null,
        },
        graphile: {
          system: "Graphile Worker",
          config: `${opts.workers} run() x concurrency ${opts.concurrency}, localQueue ${GRAPHILE_LOCAL_QUEUE}, completeJobBatchDelay ${GRAPHILE_COMPLETE_BATCH_DELAY}`,
          inFlight,
          peakInFlight: g.peakInFlight,
          tasks: g.tasks,
          wallMs: g.wallMs,
          perSecond: g.perSecond,
          rounds: runs.graphile.map((x) => x.perSecond),
          cpu: g.cpu,
          db: g.db,
          redisCallsPerTask: null,
          note: "",
          tables: profiled?.graphile.tables ?? null,
          statements: profiled?.graphile.statements ?? null,
          activity: profiled?.graphile.activity ?? null,
        },
      };
      results.statementsNote = stats.statementsNote;
    }

    // --- End to end over HTTP, and pickup: the production worker; BullMQ's no-op workers beside it.
    // Whichever system is not being measured is idle (blocked in its pop), not stopped.
    if (opts.only.has("http") || opts.only.has("pickup")) {
      engine = await startAgentqEngine(q, opts.workers, opts.concurrency, log);
      await agentqWarmup(q, log, WARMUP);
      bull = await BullNoop.start(bullSettings, 2 * WARMUP);
      if (opts.only.has("http")) {
        const runs = { agentq: [] as AgentqE2e[], bull: [] as E2eResult[] };
        for (let round = 1; round <= opts.rounds; round++) {
          const h = await agentqHttp(q, log, opts.tasks, opts.clients);
          runs.agentq.push(h);
          const b = await bull.throughput(opts.tasks, opts.clients);
          runs.bull.push(b);
          console.log(`end-to-end round ${round}/${opts.rounds}: agentq HTTP ${fmtRate(h.perSecond)} tasks/s, BullMQ Queue.add ${fmtRate(b.perSecond)} jobs/s`);
        }
        const b = median(runs.bull);
        results.e2e = {
          agentq: agentqE2eRow("agentq, HTTP (POST .../coverage/refresh?force=true)", opts, runs.agentq),
          // Filled in below, once the engine with a cooldown has run the same load.
          agentqCooldown: null,
          bull: { system: "BullMQ, Queue.add", clients: opts.clients, inFlight, rounds: runs.bull.map((x) => x.perSecond), runP50Ms: null, wait: null, ...b },
        };
      }
      if (opts.only.has("pickup")) {
        console.log(`pickup latency, ${opts.pickups} tasks one at a time, agentq then BullMQ ...`);
        const pickup = await agentqPickup(q, log, opts.pickups);
        const bullPickup = await bull.pickup(opts.pickups);
        results.latencies.push(pickup.db, pickup.client, pickup.run, bullPickup.job, bullPickup.client);
        results.pickupClient = pickup.client;
        results.pickupRows = pickup.db;
      }
      await bull.close();
      bull = null;
      await engine.stop();
      engine = null;

      // The same HTTP load and the same pickups with a claim cooldown: what it buys and what it costs.
      engine = await startAgentqEngine(q, opts.workers, opts.concurrency, log, undefined, BENCH_CLAIM_COOLDOWN_MS);
      await agentqWarmup(q, log, WARMUP);
      if (results.e2e) {
        const runs: AgentqE2e[] = [];
        for (let round = 1; round <= opts.rounds; round++) {
          const h = await agentqHttp(q, log, opts.tasks, opts.clients);
          runs.push(h);
          console.log(`end-to-end round ${round}/${opts.rounds}, claim cooldown ${BENCH_CLAIM_COOLDOWN_MS} ms: agentq HTTP ${fmtRate(h.perSecond)} tasks/s`);
        }
        results.e2e.agentqCooldown = agentqE2eRow(`agentq, HTTP, claim cooldown ${BENCH_CLAIM_COOLDOWN_MS} ms (AGENTQ_CLAIM_COOLDOWN_MS)`, opts, runs);
      }
      if (opts.only.has("pickup")) {
        const pickup = await agentqPickup(q, log, opts.pickups);
        results.latencies.push({ ...pickup.client, what: `${pickup.client.what}, claim cooldown ${BENCH_CLAIM_COOLDOWN_MS} ms` });
      }
      await engine.stop();
      engine = null;
    }

    // --- Cancel latency: agentq with the sleeping worker, then BullMQ's peer.
    if (opts.only.has("cancel")) {
      console.log(`cancel latency, ${opts.cancels} running tasks (JavaScript sleep), agentq then BullMQ ...`);
      engine = await startAgentqEngine(q, opts.workers, opts.concurrency, log, SLEEPER_WORKER);
      results.latencies.push(...(await agentqCancel(q, log, opts.cancels)));
      await engine.stop();
      engine = null;
      results.latencies.push(...(await bullCancel(bullSettings, redisUrl, BULL_CANCEL_CHANNEL, opts.cancels)));
    }

    // --- Cancel of a task blocked inside a PostgreSQL statement.
    if (opts.only.has("pgcancel")) {
      console.log(`cancel latency, ${opts.cancels} running tasks blocked in select pg_sleep(30) ...`);
      engine = await startAgentqEngine(q, opts.workers, opts.concurrency, log, PG_SLEEPER_WORKER);
      const pg = await agentqPgCancel(q, log, opts.cancels, url);
      await engine.stop();
      engine = null;
      results.pgCancel = pg;
      results.latencies.push(pg.visible, pg.backend);
    }

    results.machine = await machineFacts(q, graphileSchema);
    const { machine } = results;
    console.log("");
    for (const l of targetTable(targets(results))) console.log(l);
    if (results.burn) {
      console.log("\nburn-down:");
      for (const l of burnTable(results.burn)) console.log(l);
      console.log("");
      for (const l of profileTable(results.burn)) console.log(l);
      console.log("");
      for (const l of limitNotes(results)) console.log(l);
      if (results.statementsNote) console.log(`profile: ${results.statementsNote}`);
      if (results.burn.agentq.statements) {
        console.log("\nagentq statements (pg_stat_statements):");
        for (const l of statementTable(results.burn.agentq.statements, results.burn.agentq.tasks)) console.log(l);
      }
      if (results.burn.profiled?.agentq.threadProfiles) {
        console.log("");
        for (const l of threadProfileLines(results.burn.profiled.agentq.threadProfiles)) console.log(l);
      }
      if (results.burn.agentq.activity) {
        console.log("\nagentq backends (pg_stat_activity samples):");
        for (const l of activityTable(results.burn.agentq.activity)) console.log(l);
      }
      if (results.burn.graphile.activity) {
        console.log("\nGraphile Worker backends (pg_stat_activity samples):");
        for (const l of activityTable(results.burn.graphile.activity)) console.log(l);
      }
    }
    if (results.e2e) {
      console.log("\nend to end:");
      for (const l of e2eTable(results.e2e, results.burn?.bull ?? null)) console.log(l);
    }
    if (results.latencies.length > 0) {
      console.log("");
      for (const l of latencyTable(results.latencies)) console.log(l);
    }
    console.log("");
    console.log(
      `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory}; Bun ${machine.bun}; PostgreSQL ${machine.postgres}; Redis ${machine.redis}; BullMQ ${machine.bullmq}; Graphile Worker ${machine.graphile}; ${machine.date}`,
    );
    console.log(`postgres: ${machine.pgSettings}; redis persistence: ${machine.redisPersistence}`);
    console.log(`engine under test: commit ${machine.commit}`);
    console.log(`whole run: ${fmtMs(now() - started)}`);
    const all = SCENARIOS.every((s) => opts.only.has(s));
    if (opts.writeDocs && all) {
      writeBenchmarkSection(SECTION_TITLE, docsSection(results));
      console.log(`\nwrote the "${SECTION_TITLE}" section of docs/benchmarks.md`);
    } else if (opts.writeDocs) console.log(`\n--only given: docs/benchmarks.md left as it is`);
    return 0;
  } finally {
    if (bull) await bull.close().catch((e) => console.error(`BullMQ close failed: ${String(e)}`));
    if (engine) await engine.stop().catch((e) => console.error(`engine stop failed: ${String(e)}`));
    await q.stopServer().catch(() => {});
    await deletePrefix(q.runtime.redis).catch((e) => console.error(`could not clean ${REDIS_PREFIX}: ${String(e)}`));
    await stats.close().catch(() => {});
    await q.runtime.close();
  }
}
