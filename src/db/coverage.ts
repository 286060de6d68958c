/**
 * The coverage meter's SQL: one statement computes every node's aggregates and
 * the scope totals, whatever the scope size (a recursive CTE walks the DAG;
 * UNION, not UNION ALL, visits a shared descendant once).
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";
import type { CoverageTotals, NodeStats, CoverageReport } from "../core/coverage.ts";
import { toPgArray } from "./taxonomy.ts";

export interface CoverageScope {
  agentId: string;
  roots: readonly string[];
  version: string;
  confidenceThreshold: number;
  defaultTarget: number;
}

type Row = {
  node_id: string;
  document_count: number;
  chunk_count: number;
  target: number;
  total_documents: number;
  total_chunks: number;
};

export async function loadCoverageStats(db: DbOrTx, scope: CoverageScope): Promise<{ nodes: NodeStats[]; totals: CoverageTotals }> {
  const rows = await db.execute<Row>(sql`
    with recursive scope(node_id) as (
      select r from unnest(${toPgArray(scope.roots)}::uuid[]) as r
      union
      select e.child_id from taxonomy_edges e join scope s on e.parent_id = s.node_id
      where e.version = ${scope.version}
    ),
    hits as materialized (
      select dt.node_id, dt.doc_id, d.chunk_count
      from scope s
      join doc_taxonomy dt on dt.node_id = s.node_id and dt.version = ${scope.version}
                          and dt.confidence >= ${scope.confidenceThreshold}::double precision
      join documents d on d.doc_id = dt.doc_id
    ),
    per_node as (
      select node_id, count(*)::int as document_count, sum(chunk_count)::bigint as chunk_count
      from hits group by node_id
    ),
    totals as (
      select count(*)::int as total_documents, coalesce(sum(chunk_count), 0)::bigint as total_chunks
      from (select distinct doc_id, chunk_count from hits) u
    )
    select s.node_id,
           coalesce(p.document_count, 0) as document_count,
           coalesce(p.chunk_count, 0)::float8 as chunk_count,
           coalesce(ct.target_document_count, ${scope.defaultTarget}::int) as target,
           t.total_documents, t.total_chunks::float8 as total_chunks
    from scope s
    cross join totals t
    left join per_node p on p.node_id = s.node_id
    left join coverage_targets ct on ct.agent_id = ${scope.agentId} and ct.node_id = s.node_id
    order by s.node_id`);
  const first = rows[0];
  return {
    nodes: rows.map((r) => ({
      nodeId: r.node_id,
      documentCount: Number(r.document_count),
      chunkCount: Number(r.chunk_count),
      target: Number(r.target),
    })),
    totals: first
      ? { totalDocuments: Number(first.total_documents), totalChunks: Number(first.total_chunks) }
      : { totalDocuments: 0, totalChunks: 0 },
  };
}

/** Stores the figures on the agent. `at` is the calculation time the response reports. */
export async function storeAgentCoverage(db: DbOrTx, agentId: string, report: CoverageReport, at: Date): Promise<void> {
  await db.execute(sql`
    update agents set coverage_percent = ${report.overall_coverage}, total_documents = ${report.total_documents},
                      total_chunks = ${report.total_chunks}, last_coverage_update = ${at.toISOString()}::timestamptz,
                      updated_at = now()
    where agent_id = ${agentId}`);
}

export async function insertCoverageHistory(
  db: DbOrTx,
  entry: { agentId: string; report: CoverageReport; version: string; at: Date; taskId?: string },
): Promise<void> {
  await db.execute(sql`
    insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version, task_id)
    values (${entry.agentId}, ${entry.at.toISOString()}::timestamptz, ${entry.report.overall_coverage},
            ${entry.report.total_documents}, ${entry.report.total_chunks}, ${entry.version}, ${entry.taskId ?? null})`);
}
