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
import { fetchedStatusIs } from "./byId.ts";

export interface Claim {
  taskId: string;
  agentId: string;
  leaseToken: string;
  attempt: number;
  timeoutMs: number;
  priority: Priority;
  /** Enqueue (created_at) to this start (started_at), in ms; for metrics and logs. */
  waitMs: number;
  /** The agent has max_concurrent_refreshes: when this task ends, one of its parked tasks may run. */
  limited: boolean;
  /** The agent's scope, read in the same statement so the task needs no second lookup. */
  agent: { agent_id: string; taxonomy_node_ids: string[]; taxonomy_version: string };
}

/** A popped task left pending because its agent was at max_concurrent_refreshes. */
export interface Deferred {
  taskId: string;
  agentId: string;
  priority: Priority;
  /** Its queue score (enqueue time in ms), so it goes back to its place when a slot frees. */
  score: number;
}

export interface ClaimBatch {
  claims: Claim[];
  deferred: Deferred[];
}

type ClaimRow = {
  /** claimed; limited (first statement: the agent has a limit, decided by the second); deferred. */
  kind: "claimed" | "limited" | "deferred";
  task_id: string;
  agent_id: string;
  lease_token: string;
  attempt: number;
  timeout_ms: number;
  priority: Priority;
  wait_ms: number;
  taxonomy_node_ids: string[];
  taxonomy_version: string;
  limited: boolean;
  score: number;
};

/**
 * started_at and the lease count from the claiming statement's own start, not its transaction's:
 * a limited claim's statement starts after its lock was granted, so a task that took a freed
 * place always starts after the one that freed it ended (a reading of started_at/completed_at
 * never shows an overlap the limit did not allow), and a wait for the lock does not shorten the
 * lease. Outside a transaction the two are the same.
 */
const claimAssignments = (owner: string, leaseMs: number) => sql`
    status = 'running', attempt = t.attempt + 1, lease_token = gen_random_uuid(), lease_owner = ${owner},
    lease_expires_at = statement_timestamp() + ${leaseMs}::int * interval '1 millisecond', started_at = statement_timestamp(),
    progress_percentage = 0, queue_position = null, updated_at = now()`;

/** RETURNING of a claim; `scope` names the relation holding the agent's taxonomy_node_ids and taxonomy_version. */
const claimedColumns = (scope: "a" | "c") => sql`'claimed'::text as kind, t.task_id, t.agent_id, t.lease_token, t.attempt, t.timeout_ms, t.priority,
    (extract(epoch from now() - t.created_at) * 1000)::float8 as wait_ms, ${sql.raw(scope)}.taxonomy_node_ids, ${sql.raw(scope)}.taxonomy_version`;

/**
 * Claims every id of `taskIds` that is still pending and not cancelled, each under its own lease
 * token, in the order given; except that an agent with `max_concurrent_refreshes` never gets more
 * running tasks than that: its ids beyond the room left come back as `deferred`, still pending.
 *
 * Tasks of agents without a limit (nearly all) are claimed by ONE statement, as before, which
 * also names the ids whose agent has a limit. Only those take a second step, a transaction that
 * locks their agent rows (id order, so two claimers cannot deadlock; FOR NO KEY UPDATE, so
 * enqueues, whose foreign key takes KEY SHARE, are not held up) and then, in a statement of its
 * own, counts the agent's running tasks and claims up to the room left. That statement's snapshot
 * is taken after the lock was granted, so it sees every claim committed by whoever held the lock
 * before: two claimers can never both take the last place (one statement would not do: its
 * snapshot predates its wait for the lock). A task ending meanwhile only leaves more room.
 */
export async function claimBatch(db: DbOrTx, taskIds: readonly string[], owner: string, leaseMs: number): Promise<ClaimBatch> {
  if (taskIds.length === 0) return { claims: [], deferred: [] };
  const rows = await queryPrepared<ClaimRow>(
    db,
    // The candidates are read first, in a CTE of their own (MATERIALIZED: a fence), by primary key
    // as the claim always was: a filter on the agents' limit inside the UPDATE's join let the
    // planner start from agents instead (the new column has no statistics at first, so "no
    // limit" looked rare) and walk every agent's tasks.
    sql`
    with c as materialized (
      select t.task_id, t.agent_id, t.priority, a.max_concurrent_refreshes is not null as limited, a.taxonomy_node_ids, a.taxonomy_version
      from background_tasks t join agents a on a.agent_id = t.agent_id
      where t.task_id = any(${toPgArray(taskIds)}::text[]) and ${fetchedStatusIs("t", "pending")} and not t.cancellation_requested),
    claimed as (
      update background_tasks t set ${claimAssignments(owner, leaseMs)}
      from c
      where t.task_id = c.task_id and not c.limited and ${fetchedStatusIs("t", "pending")} and not t.cancellation_requested
      returning ${claimedColumns("c")}, false as limited, 0::float8 as score)
    select * from claimed
    union all
    select 'limited', c.task_id, c.agent_id, null, null, null, c.priority, null, null, null, true, 0 from c where c.limited`,
  );
  const limitedIds = new Set(rows.filter((r) => r.kind === "limited").map((r) => r.task_id));
  const all = rows.filter((r) => r.kind === "claimed");
  const deferred: Deferred[] = [];
  if (limitedIds.size > 0) {
    for (const r of await claimWithinLimits(db, taskIds.filter((id) => limitedIds.has(id)), owner, leaseMs)) {
      if (r.kind === "claimed") all.push(r);
      else deferred.push({ taskId: r.task_id, agentId: r.agent_id, priority: r.priority, score: Number(r.score) });
    }
  }
  const byId = new Map(all.map((r) => [r.task_id, toClaim(r)]));
  return { claims: taskIds.flatMap((id) => byId.get(id) ?? []), deferred };
}

/** The second step of claimBatch, for ids whose agent has a limit: lock, count, claim the room. */
async function claimWithinLimits(db: DbOrTx, taskIds: readonly string[], owner: string, leaseMs: number): Promise<ClaimRow[]> {
  const ids = toPgArray(taskIds);
  return db.transaction(async (tx) => {
    await tx.execute(sql`
      with mine as materialized (select distinct agent_id from background_tasks where task_id = any(${ids}::text[]))
      select a.agent_id from agents a join mine on mine.agent_id = a.agent_id
      where a.max_concurrent_refreshes is not null
      order by a.agent_id for no key update of a`);
    // A new statement, so a new snapshot: it sees the claims of whoever held the locks before us.
    const rows = await tx.execute<ClaimRow>(sql`
      with wanted as (
        select t.task_id, t.agent_id, t.priority, t.created_at,
               row_number() over (partition by t.agent_id order by w.ord) as n
        from unnest(${ids}::text[]) with ordinality as w(task_id, ord)
        join background_tasks t on t.task_id = w.task_id
        where t.status = 'pending' and not t.cancellation_requested),
      room as (
        select a.agent_id, a.max_concurrent_refreshes
                 - (select count(*) from background_tasks r where r.agent_id = a.agent_id and r.status = 'running')::int as room
        from agents a where a.agent_id in (select agent_id from wanted) and a.max_concurrent_refreshes is not null),
      verdict as (
        -- An agent whose limit was lifted since the first step has no row in room: no limit.
        select w.*, (r.agent_id is null or w.n <= r.room) as allowed, r.agent_id is not null as limited
        from wanted w left join room r on r.agent_id = w.agent_id),
      claimed as (
        update background_tasks t set ${claimAssignments(owner, leaseMs)}
        from agents a, verdict v
        where t.task_id = v.task_id and v.allowed and t.status = 'pending' and not t.cancellation_requested and a.agent_id = t.agent_id
        returning ${claimedColumns("a")}, v.limited, 0::float8 as score)
      select * from claimed
      union all
      select 'deferred', v.task_id, v.agent_id, null, null, null, v.priority, null, null, null, true,
             floor(extract(epoch from v.created_at) * 1000)::float8
      from verdict v where not v.allowed`);
    return [...rows];
  });
}

/** claimBatch without the deferred ids (they stay pending): for callers that claim one task by id. */
export async function claimTasks(db: DbOrTx, taskIds: readonly string[], owner: string, leaseMs: number): Promise<Claim[]> {
  return (await claimBatch(db, taskIds, owner, leaseMs)).claims;
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
    limited: r.limited,
    agent: { agent_id: r.agent_id, taxonomy_node_ids: r.taxonomy_node_ids, taxonomy_version: r.taxonomy_version },
  };
}
