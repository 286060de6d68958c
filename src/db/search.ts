/** Full-text search over chunks of the documents in an agent's scope. */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";
import { toPgArray } from "./taxonomy.ts";

export type SearchHit = {
  chunk_id: string;
  doc_id: string;
  title: string;
  chunk_index: number;
  text: string;
  score: number;
};

export interface SearchScope {
  roots: readonly string[];
  version: string;
  confidenceThreshold: number;
}

/**
 * Ranks chunks by ts_rank_cd of a websearch-syntax query. Only documents that
 * count towards the agent's coverage (mapped into its scope at or above the
 * confidence threshold) are searched. Counts the query on the agent.
 */
export async function searchScope(db: DbOrTx, agentId: string, scope: SearchScope, query: string, topK: number): Promise<SearchHit[]> {
  const rows = await db.execute<SearchHit>(sql`
    with recursive scope(node_id) as (
      select r from unnest(${toPgArray(scope.roots)}::uuid[]) as r
      union
      select e.child_id from taxonomy_edges e join scope s on e.parent_id = s.node_id
      where e.version = ${scope.version}
    ),
    scoped_docs as (
      select distinct dt.doc_id from doc_taxonomy dt join scope s on s.node_id = dt.node_id
      where dt.version = ${scope.version} and dt.confidence >= ${scope.confidenceThreshold}::double precision
    ),
    q as (select websearch_to_tsquery('english', ${query}) as tsq)
    select c.chunk_id, c.doc_id, d.title, c.chunk_index, c.text,
           ts_rank_cd(c.tsv, q.tsq)::float8 as score
    from q, chunks c
    join scoped_docs sd on sd.doc_id = c.doc_id
    join documents d on d.doc_id = c.doc_id
    where c.tsv @@ q.tsq
    order by score desc, c.chunk_id
    limit ${topK}`);
  await db.execute(sql`update agents set total_queries = total_queries + 1 where agent_id = ${agentId}`);
  return [...rows];
}
