/**
 * Claim statements: pending -> running under a fresh lease token.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";

export interface Claim {
  taskId: string;
  agentId: string;
  leaseToken: string;
  attempt: number;
  timeoutMs: number;
  priority: Priority;
  /** Enqueue (created_at) to this start (started_at), in ms; for metrics and logs. */
  waitMs: number;
  /** The agent's scope, read in the same statement so the task needs no second lookup. */
  agent: { agent_id: string; taxonomy_node_ids: string[]; taxonomy_version: string };
}

/** pending -> running, unless the task was cancelled or claimed by someone else meanwhile. */
export async function claimTask(db: DbOrTx, taskId: string, owner: string, leaseMs: number): Promise<Claim | null> {
  const rows = await queryPrepared<{
    task_id: string;
    agent_id: string;
    lease_token: string;
    attempt: number;
    timeout_ms: number;
    priority: Priority;
    wait_ms: number;
    taxonomy_node_ids: string[];
    taxonomy_version: string;
  }>(
    db,
    sql`
    update background_tasks t
    set status = 'running', attempt = t.attempt + 1, lease_token = gen_random_uuid(), lease_owner = ${owner},
        lease_expires_at = now() + ${leaseMs}::int * interval '1 millisecond', started_at = now(),
        progress_percentage = 0, queue_position = null, updated_at = now()
    from agents a
    where t.task_id = ${taskId} and t.status = 'pending' and not t.cancellation_requested and a.agent_id = t.agent_id
    returning t.task_id, t.agent_id, t.lease_token, t.attempt, t.timeout_ms, t.priority,
      (extract(epoch from now() - t.created_at) * 1000)::float8 as wait_ms, a.taxonomy_node_ids, a.taxonomy_version`,
  );
  const r = rows[0];
  return r
    ? {
        taskId: r.task_id,
        agentId: r.agent_id,
        leaseToken: r.lease_token,
        attempt: r.attempt,
        timeoutMs: r.timeout_ms,
        priority: r.priority,
        waitMs: Number(r.wait_ms),
        agent: { agent_id: r.agent_id, taxonomy_node_ids: r.taxonomy_node_ids, taxonomy_version: r.taxonomy_version },
      }
    : null;
}
