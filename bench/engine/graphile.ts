/**
 * The Graphile Worker peer (0.17, a devDependency used by bench/ only): PostgreSQL-only,
 * like agentq's truth, run batched as its performance page configures it: a local queue of
 * 500 jobs per instance (`localQueue: {size: 500}`), completions batched with
 * `completeJobBatchDelay: 0` (and `failJobBatchDelay: 0`), a pool of concurrency + 1
 * connections (`maxPoolSize`). W instances (`run()`) of concurrency C in this process,
 * the same jobs in flight as agentq's W workers x C. Its own database
 * (`agentq_bench_graphile`), schema `graphile_worker`, created by its own migrations.
 */
import { EventEmitter } from "node:events";
import postgres from "postgres";
import { Logger, makeWorkerUtils, run, runMigrations, type Runner, type WorkerEvents } from "graphile-worker";
import { ensureDatabase } from "../../src/db/migrate.ts";
import { CpuMeter, type CpuUse } from "./cpu.ts";
import { diffCounters, diffStatements, diffTables, type ActivitySample, type DbCounters, type StatementCounters, type StatsReader, type TableCounters } from "./stats.ts";
import { now, pollUntil, Signal } from "./util.ts";

export const GRAPHILE_APP = "agentq-bench-graphile";
/** As on Graphile Worker's performance page. */
export const GRAPHILE_LOCAL_QUEUE = 500;
export const GRAPHILE_COMPLETE_BATCH_DELAY = 0;
export const GRAPHILE_FAIL_BATCH_DELAY = 0;

export interface GraphileSettings {
  url: string;
  database: string;
  workers: number;
  concurrency: number;
}

export const graphilePoolSize = (concurrency: number) => concurrency + 1;

/** Warnings and errors only: its info lines (one per worker start) would drown the benchmark's output. */
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

const withApp = (url: string, app: string) => {
  const u = new URL(url);
  u.searchParams.set("application_name", app);
  return u.toString();
};

export function graphileDatabaseUrl(benchUrl: string, env: Record<string, string | undefined> = process.env): string {
  if (env.BENCH_GRAPHILE_DATABASE_URL) return env.BENCH_GRAPHILE_DATABASE_URL;
  const u = new URL(benchUrl);
  u.pathname = "/agentq_bench_graphile";
  u.search = "";
  return u.toString();
}

export async function prepareGraphile(s: GraphileSettings): Promise<string> {
  await ensureDatabase(s.url);
  await runMigrations({ connectionString: withApp(s.url, GRAPHILE_APP), logger });
  const sql = postgres(s.url, { max: 1, onnotice: () => {} });
  try {
    await sql`truncate graphile_worker._private_jobs cascade`;
    const [v] = await sql<{ v: string }[]>`select max(id)::text as v from graphile_worker.migrations`;
    return v?.v ?? "?";
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export interface GraphileBurn {
  tasks: number;
  /** run() called -> the last completion batch committed (the jobs table empty). */
  wallMs: number;
  /** run() called -> the last `job:complete` event (the handler returned; its delete may still be batched). */
  handlersDoneMs: number;
  perSecond: number;
  peakInFlight: number;
  cpu: CpuUse;
  db: DbCounters;
  tables: TableCounters[] | null;
  statements: StatementCounters[] | null;
  activity: { rows: ActivitySample[]; samples: number } | null;
}

/** N no-op jobs added first (addJobs), then W runners started; timed to the last durable completion. */
export async function graphileBurnDown(s: GraphileSettings, stats: StatsReader, tasks: number, profile: boolean): Promise<GraphileBurn> {
  const utils = await makeWorkerUtils({ connectionString: withApp(s.url, GRAPHILE_APP), logger });
  try {
    for (let i = 0; i < tasks; i += 2000)
      await utils.addJobs(Array.from({ length: Math.min(2000, tasks - i) }, (_, j) => ({ identifier: "noop", payload: { i: i + j } })));
  } finally {
    await utils.release();
  }
  const poll = postgres(withApp(s.url, `${GRAPHILE_APP}-poll`), { max: 1, onnotice: () => {} });
  const jobsLeft = async () => (await poll<{ n: number }[]>`select count(*)::int as n from graphile_worker._private_jobs`)[0]?.n ?? -1;
  const left = await jobsLeft();
  if (left !== tasks) throw new Error(`Graphile Worker burn-down: ${left} jobs queued, expected ${tasks}`);
  await stats.backendsGone(s.database, `${GRAPHILE_APP}`);
  const probe = profile && (await stats.probeStatements(s.database));
  const tables0 = profile ? await stats.tables(s.database) : null;
  const statements0 = probe ? await stats.statements(s.database) : null;
  const db0 = await stats.counters(s.database);

  const events = new EventEmitter() as WorkerEvents;
  const changed = new Signal();
  let done = 0;
  let failed = 0;
  let lastAt = 0;
  let running = 0;
  let peakInFlight = 0;
  events.on("job:start", () => {
    peakInFlight = Math.max(peakInFlight, ++running);
  });
  events.on("job:complete", ({ error }) => {
    running--;
    lastAt = now();
    if (error) failed++;
    done++;
    changed.notify();
  });
  const sampler = profile ? stats.sampleActivity(s.database, (app) => (app.startsWith(GRAPHILE_APP) ? app.slice("agentq-bench-".length) : app || "other")) : null;
  const meter = new CpuMeter();
  const t0 = now();
  let runners: Runner[] = [];
  let cpu: CpuUse;
  let wallMs: number;
  let handlersDoneMs: number;
  try {
    runners = await Promise.all(
      Array.from({ length: s.workers }, () =>
        run({
          connectionString: withApp(s.url, GRAPHILE_APP),
          concurrency: s.concurrency,
          maxPoolSize: graphilePoolSize(s.concurrency),
          noHandleSignals: true,
          logger,
          events,
          taskList: { noop: async () => {} },
          preset: {
            worker: {
              localQueue: { size: GRAPHILE_LOCAL_QUEUE },
              completeJobBatchDelay: GRAPHILE_COMPLETE_BATCH_DELAY,
              failJobBatchDelay: GRAPHILE_FAIL_BATCH_DELAY,
            },
          },
        }),
      ),
    );
    await changed.until(() => done >= tasks, 300_000, `${tasks} Graphile Worker jobs`);
    handlersDoneMs = lastAt - t0;
    // Completions are batched: a job counts once its delete has committed.
    const durableAt = await pollUntil(async () => (await jobsLeft()) === 0, 1, 60_000, "Graphile Worker's completion batches");
    wallMs = durableAt - t0;
    cpu = meter.stop();
  } finally {
    await Promise.all(runners.map((r) => r.stop()));
  }
  const activity = sampler ? await sampler.stop() : null;
  if (failed > 0) throw new Error(`${failed} Graphile Worker jobs failed`);
  await poll.end({ timeout: 5 });
  await stats.backendsGone(s.database, `${GRAPHILE_APP}%`);
  const db = diffCounters(db0, await stats.counters(s.database));
  return {
    tasks,
    wallMs,
    handlersDoneMs,
    perSecond: tasks / (wallMs / 1000),
    peakInFlight,
    cpu,
    db,
    tables: tables0 ? diffTables(tables0, await stats.tables(s.database)) : null,
    statements: statements0 ? diffStatements(statements0, await stats.statements(s.database)) : null,
    activity,
  };
}
