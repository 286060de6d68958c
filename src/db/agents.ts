/** Statements on agents and coverage_targets. */
import { randomUUID } from "node:crypto";
import { sql, type SQL } from "drizzle-orm";
import type { Db, DbOrTx } from "./client.ts";
import { AppError, notFound } from "../core/errors.ts";
import { toIso, toIsoOrNull } from "./values.ts";
import { missingNodes, newestVersionHolding, toPgArray } from "./taxonomy.ts";

export interface AgentView {
  agent_id: string;
  name: string;
  taxonomy_node_ids: string[];
  taxonomy_version: string;
  scope_description: string | null;
  level: number;
  total_documents: number;
  total_chunks: number;
  coverage_percent: number;
  last_coverage_update: string | null;
  retrieval_config: Record<string, unknown>;
  features_config: Record<string, unknown>;
  total_queries: number;
  coverage_targets: Record<string, number>;
  /** At most this many of the agent's tasks run at once (src/db/tasks/claims.ts); null: no limit. */
  max_concurrent_refreshes: number | null;
  /** The next slot of the agent's enabled schedule (agent_schedules), or null. */
  next_run_at: string | null;
  created_at: string;
  updated_at: string;
}

type AgentRow = Omit<AgentView, "last_coverage_update" | "next_run_at" | "created_at" | "updated_at"> & {
  last_coverage_update: string | Date | null;
  next_run_at: string | Date | null;
  created_at: string | Date;
  updated_at: string | Date;
};

const toAgentView = (row: AgentRow): AgentView => ({
  ...row,
  coverage_percent: Number(row.coverage_percent),
  last_coverage_update: toIsoOrNull(row.last_coverage_update),
  next_run_at: toIsoOrNull(row.next_run_at),
  created_at: toIso(row.created_at),
  updated_at: toIso(row.updated_at),
});

const AGENT_COLUMNS = sql`
  a.agent_id, a.name, a.taxonomy_node_ids, a.taxonomy_version, a.scope_description, a.level,
  a.total_documents, a.total_chunks, a.coverage_percent, a.last_coverage_update,
  a.retrieval_config, a.features_config, a.total_queries, a.max_concurrent_refreshes, a.created_at, a.updated_at,
  coalesce((select jsonb_object_agg(ct.node_id, ct.target_document_count)
            from coverage_targets ct where ct.agent_id = a.agent_id), '{}'::jsonb) as coverage_targets,
  (select s.next_run_at from agent_schedules s where s.agent_id = a.agent_id and s.enabled) as next_run_at`;

export interface AgentCreate {
  name: string;
  taxonomy_node_ids: string[];
  taxonomy_version?: string;
  scope_description?: string;
  level?: number;
  retrieval_config?: Record<string, unknown>;
  features_config?: Record<string, unknown>;
  coverage_targets?: Record<string, number>;
  max_concurrent_refreshes?: number | null;
}

export type AgentPatch = Partial<AgentCreate>;

async function assertNodesInVersion(db: DbOrTx, version: string, ids: readonly string[]) {
  const missing = await missingNodes(db, version, ids);
  if (missing.length > 0)
    throw new AppError("unknown_taxonomy_node", `taxonomy nodes not found in version ${version}`, {
      version,
      node_ids: missing,
    });
}

async function replaceTargets(tx: DbOrTx, agentId: string, targets: Record<string, number>) {
  await tx.execute(sql`delete from coverage_targets where agent_id = ${agentId}`);
  const rows = Object.entries(targets).map(([node_id, target]) => ({ node_id, target }));
  if (rows.length === 0) return;
  await tx.execute(sql`
    insert into coverage_targets (agent_id, node_id, target_document_count)
    select ${agentId}, x.node_id, x.target from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(node_id uuid, target int)`);
}

export async function createAgent(db: Db, input: AgentCreate): Promise<AgentView> {
  const roots = [...new Set(input.taxonomy_node_ids)];
  return db.transaction(async (tx) => {
    const version = input.taxonomy_version ?? (await newestVersionHolding(tx, roots));
    if (version === null)
      throw new AppError("unknown_taxonomy_node", "no taxonomy version holds all of taxonomy_node_ids", { node_ids: roots });
    await assertNodesInVersion(tx, version, roots);
    const agentId = randomUUID();
    await tx.execute(sql`
      insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level, retrieval_config, features_config,
                          max_concurrent_refreshes)
      values (${agentId}, ${input.name}, ${toPgArray(roots)}::uuid[], ${version}, ${input.scope_description ?? null},
              ${input.level ?? 1}, ${JSON.stringify(input.retrieval_config ?? {})}::jsonb, ${JSON.stringify(input.features_config ?? {})}::jsonb,
              ${input.max_concurrent_refreshes ?? null}::int)`);
    if (input.coverage_targets) await replaceTargets(tx, agentId, input.coverage_targets);
    return (await getAgent(tx, agentId))!;
  });
}

export async function getAgent(db: DbOrTx, agentId: string): Promise<AgentView | null> {
  const rows = await db.execute<AgentRow>(sql`select ${AGENT_COLUMNS} from agents a where a.agent_id = ${agentId}`);
  return rows[0] ? toAgentView(rows[0]) : null;
}

export async function requireAgent(db: DbOrTx, agentId: string): Promise<AgentView> {
  const agent = await getAgent(db, agentId);
  if (!agent) throw notFound("agent", agentId);
  return agent;
}

export interface AgentFilters {
  level?: number;
  min_coverage?: number;
  q?: string;
  max_results: number;
  offset?: number;
}

/** `%` and `_` in a user's search text match themselves, not any characters. */
const likePattern = (q: string) => `%${q.replaceAll("\\", "\\\\").replaceAll("%", "\\%").replaceAll("_", "\\_")}%`;

export async function listAgents(db: DbOrTx, filters: AgentFilters): Promise<{ agents: AgentView[]; total: number }> {
  const where: SQL[] = [sql`true`];
  if (filters.level !== undefined) where.push(sql`a.level = ${filters.level}`);
  if (filters.min_coverage !== undefined) where.push(sql`a.coverage_percent >= ${filters.min_coverage}`);
  if (filters.q !== undefined && filters.q !== "") where.push(sql`a.name ilike ${likePattern(filters.q)}`);
  const condition = sql.join(where, sql` and `);
  const rows = await db.execute<AgentRow & { total: number }>(sql`
    select ${AGENT_COLUMNS}, count(*) over ()::int as total
    from agents a where ${condition}
    order by a.created_at desc, a.agent_id
    limit ${filters.max_results} offset ${filters.offset ?? 0}`);
  let total = rows[0]?.total;
  if (total === undefined) {
    const [c] = await db.execute<{ n: number }>(sql`select count(*)::int as n from agents a where ${condition}`);
    total = c!.n;
  }
  return { agents: rows.map(({ total: _t, ...agent }) => toAgentView(agent)), total };
}

export async function updateAgent(db: Db, agentId: string, patch: AgentPatch): Promise<AgentView> {
  return db.transaction(async (tx) => {
    const [current] = await tx.execute<{ taxonomy_version: string; taxonomy_node_ids: string[] }>(
      sql`select taxonomy_version, taxonomy_node_ids from agents where agent_id = ${agentId} for update`,
    );
    if (!current) throw notFound("agent", agentId);
    const version = patch.taxonomy_version ?? current.taxonomy_version;
    const roots = patch.taxonomy_node_ids ? [...new Set(patch.taxonomy_node_ids)] : current.taxonomy_node_ids;
    if (patch.taxonomy_version !== undefined || patch.taxonomy_node_ids !== undefined)
      await assertNodesInVersion(tx, version, roots);
    const sets: SQL[] = [sql`updated_at = now()`];
    if (patch.name !== undefined) sets.push(sql`name = ${patch.name}`);
    if (patch.taxonomy_node_ids !== undefined) sets.push(sql`taxonomy_node_ids = ${toPgArray(roots)}::uuid[]`);
    if (patch.taxonomy_version !== undefined) sets.push(sql`taxonomy_version = ${version}`);
    if (patch.scope_description !== undefined) sets.push(sql`scope_description = ${patch.scope_description}`);
    if (patch.level !== undefined) sets.push(sql`level = ${patch.level}`);
    if (patch.retrieval_config !== undefined) sets.push(sql`retrieval_config = ${JSON.stringify(patch.retrieval_config)}::jsonb`);
    if (patch.features_config !== undefined) sets.push(sql`features_config = ${JSON.stringify(patch.features_config)}::jsonb`);
    if (patch.max_concurrent_refreshes !== undefined) sets.push(sql`max_concurrent_refreshes = ${patch.max_concurrent_refreshes}::int`);
    await tx.execute(sql`update agents set ${sql.join(sets, sql`, `)} where agent_id = ${agentId}`);
    if (patch.coverage_targets !== undefined) await replaceTargets(tx, agentId, patch.coverage_targets);
    return (await getAgent(tx, agentId))!;
  });
}

export async function deleteAgent(db: DbOrTx, agentId: string): Promise<boolean> {
  const rows = await db.execute(sql`delete from agents where agent_id = ${agentId} returning agent_id`);
  return rows.length > 0;
}
