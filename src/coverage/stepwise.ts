/**
 * The coverage computation as a background task runs it: the same formula as
 * measureCoverage, in a bounded number of steps (scope, at most MAX_BATCHES
 * node batches, totals) so it can report real progress and stop between steps
 * when its AbortSignal fires (which also cancels the statement in flight). Small scopes take two steps (scope, then nodes
 * and totals together). Statements are prepared: this is the hot path.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { toPgArray } from "../db/taxonomy.ts";
import { queryPrepared } from "../db/prepared.ts";
import { finalizeCoverage, type NodeStats } from "../core/coverage.ts";
import type { AgentScope, CoverageResult, MeterSettings } from "./meter.ts";

export const MAX_BATCHES = 8;
/** Scopes up to this many nodes are measured in one statement after the scope walk. */
export const SINGLE_STEP_NODES = 32;

export interface StepHooks {
  signal?: AbortSignal;
  onProgress?: (percent: number) => void | Promise<void>;
}

function checkpoint(signal: AbortSignal | undefined) {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException(String(signal.reason ?? "aborted"), "AbortError");
}

type NodeRow = { node_id: string; document_count: number; chunk_count: number; target: number };
type TotalsRow = { total_documents: number; total_chunks: number };

/** Per-node aggregates of `nodes`, and (when `withTotals`) the scope totals over the same nodes. */
function nodeStatsQuery(agent: AgentScope, settings: MeterSettings, nodes: readonly string[]) {
  return sql`
    select n.node_id, count(dt.doc_id)::int as document_count, coalesce(sum(d.chunk_count), 0)::float8 as chunk_count,
           coalesce(ct.target_document_count, ${settings.defaultTargetDocuments}::int) as target
    from unnest(${toPgArray(nodes)}::uuid[]) as n(node_id)
    left join doc_taxonomy dt on dt.node_id = n.node_id and dt.version = ${agent.taxonomy_version}::text
                             and dt.confidence >= ${settings.confidenceThreshold}::double precision
    left join documents d on d.doc_id = dt.doc_id
    left join coverage_targets ct on ct.agent_id = ${agent.agent_id}::uuid and ct.node_id = n.node_id
    group by n.node_id, ct.target_document_count`;
}

function totalsQuery(agent: AgentScope, settings: MeterSettings, nodes: readonly string[]) {
  return sql`
    select count(*)::int as total_documents, coalesce(sum(d.chunk_count), 0)::float8 as total_chunks
    from documents d
    where d.doc_id in (select dt.doc_id from doc_taxonomy dt
                       where dt.node_id = any(${toPgArray(nodes)}::uuid[]) and dt.version = ${agent.taxonomy_version}::text
                         and dt.confidence >= ${settings.confidenceThreshold}::double precision)`;
}

const toNodeStats = (r: NodeRow): NodeStats => ({
  nodeId: r.node_id,
  documentCount: Number(r.document_count),
  chunkCount: Number(r.chunk_count),
  target: Number(r.target),
});

export async function measureCoverageInSteps(
  db: DbOrTx,
  agent: AgentScope,
  settings: MeterSettings,
  hooks: StepHooks = {},
): Promise<CoverageResult> {
  const { signal, onProgress } = hooks;
  // Every statement carries the signal: an abort cancels the one running in PostgreSQL.
  const q = { signal };
  checkpoint(signal);
  const scopeRows = await queryPrepared<{ node_id: string }>(
    db,
    sql`
    with recursive scope(node_id) as (
      select r from unnest(${toPgArray(agent.taxonomy_node_ids)}::uuid[]) as r
      union
      select e.child_id from taxonomy_edges e join scope s on e.parent_id = s.node_id where e.version = ${agent.taxonomy_version}::text
    ) select node_id from scope order by node_id`,
    q,
  );
  const scope = scopeRows.map((r) => r.node_id);
  await onProgress?.(10);

  const nodes: NodeStats[] = [];
  let totals: TotalsRow | undefined;
  if (scope.length <= SINGLE_STEP_NODES) {
    // Small scope: nodes and totals in one round trip (the two statements, joined).
    const rows = await queryPrepared<NodeRow & TotalsRow>(
      db,
      sql`with per_node as (${nodeStatsQuery(agent, settings, scope)}), totals as (${totalsQuery(agent, settings, scope)})
          select per_node.*, totals.* from per_node cross join totals`,
      q,
    );
    nodes.push(...rows.map(toNodeStats));
    totals = rows[0];
  } else {
    const batchSize = Math.ceil(scope.length / MAX_BATCHES);
    for (let i = 0; i < scope.length; i += batchSize) {
      checkpoint(signal);
      const rows = await queryPrepared<NodeRow>(db, nodeStatsQuery(agent, settings, scope.slice(i, i + batchSize)), q);
      nodes.push(...rows.map(toNodeStats));
      await onProgress?.(10 + Math.round((80 * Math.min(scope.length, i + batchSize)) / scope.length));
    }
    checkpoint(signal);
    [totals] = await queryPrepared<TotalsRow>(db, totalsQuery(agent, settings, scope), q);
  }
  await onProgress?.(95);
  checkpoint(signal);
  nodes.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  const report = finalizeCoverage(nodes, {
    totalDocuments: Number(totals?.total_documents ?? 0),
    totalChunks: Number(totals?.total_chunks ?? 0),
  });
  return { agent_id: agent.agent_id, ...report, version: agent.taxonomy_version, calculated_at: new Date().toISOString() };
}
