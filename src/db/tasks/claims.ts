/**
 * The claim statement: pending -> running under a fresh lease token, for a
 * whole batch of popped ids in one fenced UPDATE (one round trip, one commit).
 * An id that was cancelled, claimed by someone else, or deleted meanwhile is
 * simply not returned: its popper drops it.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../client.ts";
import type { Priority } from "../../core/tasks.ts";
import { queryPrepared } from "../prepared.ts";
import { toPgArray } from "../taxonomy.ts";

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

type ClaimRow = {
  task_id: string;
  agent_id: string;
  lease_token: string;
  attempt: number;
  timeout_ms: number;
  priority: Priority;
  wait_ms: number;
  taxonomy_node_ids: string[];
  taxonomy_version: string;
};

/**
 * Claims every id of `taskIds` that is still pending and not cancelled, each under its own lease
 * token, in the order given. The row lock orders this against a concurrent cancel or claim.
 */
export async function claimTasks(db: DbOrTx, taskIds: readonly string[], owner: string, leaseMs: number): Promise<Claim[]> {
  if (taskIds.length === 0) return [];
  const rows = await queryPrepared<ClaimRow>(
    db,
    sql`
    update background_tasks t
    set status = 'running', attempt = t.attempt + 1, lease_token = gen_random_uuid(), lease_owner = ${owner},
        lease_expires_at = now() + ${leaseMs}::int * interval '1 millisecond', started_at = now(),
        progress_percentage = 0, queue_position = null, updated_at = now()
    from agents a
    where t.task_id = any(${toPgArray(taskIds)}::text[]) and t.status = 'pending' and not t.cancellation_requested
      and a.agent_id = t.agent_id
    returning t.task_id, t.agent_id, t.lease_token, t.attempt, t.timeout_ms, t.priority,
      (extract(epoch from now() - t.created_at) * 1000)::float8 as wait_ms, a.taxonomy_node_ids, a.taxonomy_version`,
  );
  const byId = new Map(rows.map((r) => [r.task_id, toClaim(r)]));
  return taskIds.flatMap((id) => byId.get(id) ?? []);
}

/** claimTasks for one id. */
export async function claimTask(db: DbOrTx, taskId: string, owner: string, leaseMs: number): Promise<Claim | null> {
  return (await claimTasks(db, [taskId], owner, leaseMs))[0] ?? null;
}

function toClaim(r: ClaimRow): Claim {
  return {
    taskId: r.task_id,
    agentId: r.agent_id,
    leaseToken: r.lease_token,
    attempt: r.attempt,
    timeoutMs: r.timeout_ms,
    priority: r.priority,
    waitMs: Number(r.wait_ms),
    agent: { agent_id: r.agent_id, taxonomy_node_ids: r.taxonomy_node_ids, taxonomy_version: r.taxonomy_version },
  };
}
