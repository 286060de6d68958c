/**
 * Scrape-time reads of the shared state: queue depths and the oldest queued id from Redis
 * (src/queue/dispatch.ts, where every Redis operation lives),
 * overdue running tasks from PostgreSQL. Each is one cheap round trip; a failure is the
 * caller's (ScrapeGauge logs it and leaves the gauge out of that scrape).
 */
import type { RedisClient } from "../queue/redisClient.ts";
import { sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { Dispatcher, oldestQueuedAgeSeconds } from "../queue/dispatch.ts";
import type { QueueKeys } from "../queue/keys.ts";
import type { MetricSources } from "./registry.ts";

/**
 * Running tasks past started_at + timeout_ms + the cancel grace: the supervisor should have
 * ended them by then, so any such task is stuck (its supervisor is wedged, or lost PostgreSQL).
 * `status = 'running'` is answered from an index on status (the partial
 * background_tasks_running_lease_idx, or (status, completed_at); the planner picks), so the scan
 * touches only running tasks (about one per worker thread), however many finished ones there are.
 */
export async function countOverdueTasks(database: Database, cancelGraceMs: number): Promise<number> {
  const [row] = await database.db.execute<{ n: number }>(sql`
    select count(*)::int as n from background_tasks
    where status = 'running' and lease_expires_at is not null
      and started_at + (timeout_ms + ${cancelGraceMs}::int) * interval '1 millisecond' < now()`);
  return row?.n ?? 0;
}

/**
 * Pending tasks of agents that already run max_concurrent_refreshes tasks or more: what waits on
 * a per-agent limit rather than on capacity. Reads only the agents that have a limit (their
 * counts come from the (agent_id, status) index).
 */
export async function countTasksHeldByAgentLimits(database: Database): Promise<number> {
  const [row] = await database.db.execute<{ n: number }>(sql`
    select coalesce(sum((select count(*) from background_tasks p where p.agent_id = a.agent_id and p.status = 'pending')), 0)::int as n
    from agents a
    where a.max_concurrent_refreshes is not null
      and (select count(*) from background_tasks r where r.agent_id = a.agent_id and r.status = 'running') >= a.max_concurrent_refreshes`);
  return row?.n ?? 0;
}

/** The scrape-time sources every process with Redis and PostgreSQL connections exports. */
export function storeSources(deps: { redis: RedisClient; keys: QueueKeys; database: Database; cancelGraceMs: number }): MetricSources {
  const dispatcher = new Dispatcher(deps.redis, deps.keys);
  return {
    queueDepths: () => dispatcher.depths(),
    oldestPendingAgeSeconds: () => oldestQueuedAgeSeconds(deps.redis, deps.keys),
    overdueTasks: () => countOverdueTasks(deps.database, deps.cancelGraceMs),
    heldByAgentLimits: () => countTasksHeldByAgentLimits(deps.database),
  };
}
