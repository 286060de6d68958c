/**
 * One sample of the soak's series, taken every 10 s from the outside of the processes under test:
 *
 *   - RSS: VmRSS of the API process and of the supervisor process (its worker threads included)
 *     from /proc/<pid>/status;
 *   - PostgreSQL connections to the soak database from pg_stat_activity, by application_name:
 *     the API's (`agentq-api`) and the supervisor's (its pool and its threads'), the benchmark's
 *     own connections left out;
 *   - Redis: the server's used_memory (INFO memory; the server is shared with other work, so it
 *     is shown, not judged) and what the soak's prefix holds: its keys (SCAN) and their bytes
 *     (MEMORY USAGE of each);
 *   - the backlog: pending tasks (PostgreSQL), ids in the Redis queues, webhook deliveries still
 *     to make (webhook_outbox pending, retries waiting their turn included).
 */
import type { Runtime } from "../../src/main.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { procStats } from "../processes.ts";
import { REDIS_PREFIX } from "./setup.ts";

export interface SoakSample {
  /** Seconds since the steady load started. */
  t: number;
  apiRssMb: number;
  supervisorRssMb: number;
  apiConnections: number;
  supervisorConnections: number;
  redisUsedMb: number;
  prefixKeys: number;
  prefixKb: number;
  pendingTasks: number;
  queuedIds: number;
  runningTasks: number;
  webhooksPending: number;
  /** Requests the load had sent by then. */
  sent: number;
}

const BENCH_APP = "agentq-bench-soak";

async function prefixFootprint(runtime: Runtime): Promise<{ keys: number; bytes: number }> {
  let cursor = "0";
  let keys = 0;
  let bytes = 0;
  do {
    const [next, batch] = await runtime.redis.scan(cursor, "MATCH", queueKeys(REDIS_PREFIX).pattern, "COUNT", 1000);
    cursor = next;
    keys += batch.length;
    const sizes = await Promise.all(batch.map((k) => runtime.redis.memory("USAGE", k) as Promise<number | null>));
    for (const s of sizes) bytes += s ?? 0;
  } while (cursor !== "0");
  return { keys, bytes };
}

export async function takeSample(runtime: Runtime, pids: { api: number; supervisor: number }, database: string, t: number, sent: number): Promise<SoakSample> {
  const { sql } = runtime.database;
  const keys = queueKeys(REDIS_PREFIX);
  const [connections, tasks, outbox, info, footprint, queued] = await Promise.all([
    sql<{ api: number; supervisor: number }[]>`
      select count(*) filter (where application_name like 'agentq-api%')::int as api,
             count(*) filter (where application_name not like 'agentq-api%' and application_name <> ${BENCH_APP})::int as supervisor
      from pg_stat_activity where datname = ${database}`,
    sql<{ pending: number; running: number }[]>`
      select count(*) filter (where status = 'pending')::int as pending, count(*) filter (where status = 'running')::int as running
      from background_tasks where status in ('pending', 'running')`,
    sql<{ n: number }[]>`select count(*)::int as n from webhook_outbox where status = 'pending'`,
    runtime.redis.info("memory"),
    prefixFootprint(runtime),
    Promise.all(keys.queues.map((q) => runtime.redis.zcard(q))),
  ]);
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
  return {
    t,
    apiRssMb: procStats(pids.api).rssMb,
    supervisorRssMb: procStats(pids.supervisor).rssMb,
    apiConnections: connections[0]!.api,
    supervisorConnections: connections[0]!.supervisor,
    redisUsedMb: used / 1048576,
    prefixKeys: footprint.keys,
    prefixKb: footprint.bytes / 1024,
    pendingTasks: tasks[0]!.pending,
    queuedIds: queued.reduce((a, n) => a + n, 0),
    runningTasks: tasks[0]!.running,
    webhooksPending: outbox[0]!.n,
    sent,
  };
}
