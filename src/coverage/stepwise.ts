/**
 * The coverage computation as a background task runs it: the same formula as
 * measureCoverage, in a bounded number of steps (scope, at most MAX_BATCHES
 * node batches, totals) so it can report real progress and stop between steps
 * when its AbortSignal fires.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { toPgArray } from "../db/taxonomy.ts";
import { finalizeCoverage, type NodeStats } from "../core/coverage.ts";
import type { AgentScope, CoverageResult, MeterSettings } from "./meter.ts";

export const MAX_BATCHES = 8;

export interface StepHooks {
  signal?: AbortSignal;
  onProgress?: (percent: number) => void | Promise<void>;
}

function checkpoint(signal: AbortSignal | undefined) {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException(String(signal.reason ?? "aborted"), "AbortError");
}

export async function measureCoverageInSteps(
  db: DbOrTx,
  agent: AgentScope,
  settings: MeterSettings,
  hooks: StepHooks = {},
): Promise<CoverageResult> {
  const { signal, onProgress } = hooks;
  const version = agent.taxonomy_version;
  checkpoint(signal);
  const scopeRows = await db.execute<{ node_id: string }>(sql`
    with recursive scope(node_id) as (
      select r from unnest(${toPgArray(agent.taxonomy_node_ids)}::uuid[]) as r
      union
      select e.child_id from taxonomy_edges e join scope s on e.parent_id = s.node_id where e.version = ${version}
    ) select node_id from scope order by node_id`);
  const scope = scopeRows.map((r) => r.node_id);
  await onProgress?.(10);

  const nodes: NodeStats[] = [];
  const batchSize = Math.max(1, Math.ceil(scope.length / MAX_BATCHES));
  for (let i = 0; i < scope.length; i += batchSize) {
    checkpoint(signal);
    const batch = scope.slice(i, i + batchSize);
    const rows = await db.execute<{ node_id: string; document_count: number; chunk_count: number; target: number }>(sql`
      select n.node_id, count(dt.doc_id)::int as document_count, coalesce(sum(d.chunk_count), 0)::float8 as chunk_count,
             coalesce(ct.target_document_count, ${settings.defaultTargetDocuments}::int) as target
      from unnest(${toPgArray(batch)}::uuid[]) as n(node_id)
      left join doc_taxonomy dt on dt.node_id = n.node_id and dt.version = ${version}
                               and dt.confidence >= ${settings.confidenceThreshold}::double precision
      left join documents d on d.doc_id = dt.doc_id
      left join coverage_targets ct on ct.agent_id = ${agent.agent_id} and ct.node_id = n.node_id
      group by n.node_id, ct.target_document_count`);
    for (const r of rows)
      nodes.push({ nodeId: r.node_id, documentCount: Number(r.document_count), chunkCount: Number(r.chunk_count), target: Number(r.target) });
    await onProgress?.(10 + Math.round((80 * Math.min(scope.length, i + batchSize)) / scope.length));
  }

  checkpoint(signal);
  const [totals] = await db.execute<{ total_documents: number; total_chunks: number }>(sql`
    select count(*)::int as total_documents, coalesce(sum(d.chunk_count), 0)::float8 as total_chunks
    from documents d
    where d.doc_id in (select dt.doc_id from doc_taxonomy dt
                       where dt.node_id = any(${toPgArray(scope)}::uuid[]) and dt.version = ${version}
                         and dt.confidence >= ${settings.confidenceThreshold}::double precision)`);
  await onProgress?.(95);
  checkpoint(signal);
  nodes.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  const report = finalizeCoverage(nodes, {
    totalDocuments: Number(totals?.total_documents ?? 0),
    totalChunks: Number(totals?.total_chunks ?? 0),
  });
  return { agent_id: agent.agent_id, ...report, version, calculated_at: new Date().toISOString() };
}
