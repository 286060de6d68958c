/**
 * Coverage of many small scopes in ONE statement: the scope walk, the per-node
 * aggregates and the totals of every agent of a batch at once (the same
 * formula and the same SQL aggregates as the stepwise meter, grouped by the
 * batch's entries). A tiny refresh otherwise costs two statements of its own,
 * and PostgreSQL's per-statement work was most of the engine's cost per task.
 *
 * An entry whose scope has more than SINGLE_STEP_NODES nodes comes back as
 * `null`: it is measured step by step (src/coverage/stepwise.ts), with
 * progress, and each step can be cancelled in PostgreSQL on its own.
 *
 * CoverageBatcher groups the measurements that are asked for while one is in
 * flight (src/tasks/groupCommit.ts): one statement per burst, no timer. A task
 * that is aborted stops waiting at once; the statement goes on for the others
 * (it is bounded: small scopes only), and is cancelled when every task waiting
 * on it was aborted.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { queryPrepared } from "../db/prepared.ts";
import { finalizeCoverage, type NodeStats } from "../core/coverage.ts";
import type { AgentScope, CoverageResult, MeterSettings } from "./meter.ts";
import { SINGLE_STEP_NODES } from "./stepwise.ts";
import { GroupCommitter } from "../tasks/groupCommit.ts";

type Row = {
  kind: "node" | "totals" | "size";
  ord: number;
  node_id: string | null;
  documents: number | null;
  chunks: number | null;
  target: number | null;
  size: number | null;
};

/** One result per scope, in order: its coverage, or null when the scope is too large for this path. */
export async function measureSmallScopes(
  db: Db,
  scopes: readonly AgentScope[],
  settings: MeterSettings,
  options: { signal?: AbortSignal } = {},
): Promise<(CoverageResult | null)[]> {
  if (scopes.length === 0) return [];
  const input = JSON.stringify(scopes.map((s, ord) => ({ ord, agent_id: s.agent_id, roots: s.taxonomy_node_ids, version: s.taxonomy_version })));
  const rows = await queryPrepared<Row>(
    db,
    sql`
    with recursive input as (
      select * from jsonb_to_recordset(${input}::jsonb) as i(ord int, agent_id uuid, roots uuid[], version text)
    ),
    scope(ord, version, node_id) as (
      select i.ord, i.version, r.node_id from input i cross join lateral unnest(i.roots) as r(node_id)
      union
      select s.ord, s.version, e.child_id from scope s join taxonomy_edges e on e.parent_id = s.node_id and e.version = s.version
    ),
    sizes as (select ord, count(*)::int as size from scope group by ord),
    small as (
      select s.ord, s.version, s.node_id, i.agent_id
      from scope s join sizes z on z.ord = s.ord join input i on i.ord = s.ord
      where z.size <= ${SINGLE_STEP_NODES}::int
    ),
    mapped as (
      select n.ord, n.node_id, d.doc_id, d.chunk_count
      from small n
      join doc_taxonomy dt on dt.node_id = n.node_id and dt.version = n.version
                          and dt.confidence >= ${settings.confidenceThreshold}::double precision
      join documents d on d.doc_id = dt.doc_id
    ),
    per_node as (
      select n.ord, n.node_id, count(m.doc_id)::int as documents, coalesce(sum(m.chunk_count), 0)::float8 as chunks,
             coalesce(ct.target_document_count, ${settings.defaultTargetDocuments}::int) as target
      from small n
      left join mapped m on m.ord = n.ord and m.node_id = n.node_id
      left join coverage_targets ct on ct.agent_id = n.agent_id and ct.node_id = n.node_id
      group by n.ord, n.node_id, ct.target_document_count
    ),
    totals as (
      select ord, count(*)::int as documents, coalesce(sum(chunk_count), 0)::float8 as chunks
      from (select distinct ord, doc_id, chunk_count from mapped) x group by ord
    )
    select 'node' as kind, ord, node_id::text, documents, chunks, target, null::int as size from per_node
    union all
    select 'totals', ord, null, documents, chunks, null, null from totals
    union all
    select 'size', ord, null, null, null, null, size from sizes`,
    options,
  );
  const nodes = scopes.map((): NodeStats[] => []);
  const totals = scopes.map(() => ({ totalDocuments: 0, totalChunks: 0 }));
  const large = scopes.map(() => false);
  for (const r of rows) {
    if (r.kind === "size") large[r.ord] = Number(r.size) > SINGLE_STEP_NODES;
    else if (r.kind === "totals") totals[r.ord] = { totalDocuments: Number(r.documents), totalChunks: Number(r.chunks) };
    else nodes[r.ord]!.push({ nodeId: r.node_id!, documentCount: Number(r.documents), chunkCount: Number(r.chunks), target: Number(r.target) });
  }
  const calculatedAt = new Date().toISOString();
  return scopes.map((scope, i) => {
    if (large[i]) return null;
    const sorted = nodes[i]!.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    return { agent_id: scope.agent_id, ...finalizeCoverage(sorted, totals[i]!), version: scope.taxonomy_version, calculated_at: calculatedAt };
  });
}

interface Waiting {
  scope: AgentScope;
  signal?: AbortSignal;
}

/** Measures small scopes asked for together in one statement (see the file comment). */
export class CoverageBatcher {
  private readonly committer: GroupCommitter<Waiting, CoverageResult | null>;

  constructor(
    private readonly db: () => Db,
    private readonly settings: MeterSettings,
    /** More scopes than this waiting are measured by successive statements. */
    maxBatch = 64,
  ) {
    this.committer = new GroupCommitter((batch) => this.write(batch), maxBatch);
  }

  get stats() {
    return this.committer.stats;
  }

  /** The scope's coverage, or null when it is too large to be measured here. Rejects at once on abort. */
  measure(scope: AgentScope, signal?: AbortSignal): Promise<CoverageResult | null> {
    signal?.throwIfAborted();
    const outcome = this.committer.submit({ scope, signal });
    if (!signal) return outcome;
    return new Promise((resolve, reject) => {
      const abort = () => reject(signal.reason);
      signal.addEventListener("abort", abort, { once: true });
      outcome.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
    });
  }

  private async write(batch: Waiting[]): Promise<Promise<CoverageResult | null>[]> {
    const live = batch.filter((w) => !w.signal?.aborted);
    // Cancelled in PostgreSQL only when nobody is left waiting for it.
    const everyoneGone = new AbortController();
    const onAbort = () => {
      if (live.every((w) => w.signal?.aborted)) everyoneGone.abort(new DOMException("every waiter aborted", "AbortError"));
    };
    for (const w of live) w.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const results = await measureSmallScopes(
        this.db(),
        live.map((w) => w.scope),
        this.settings,
        { signal: everyoneGone.signal },
      );
      const byWaiting = new Map(live.map((w, i) => [w, results[i]!]));
      return batch.map((w) => (byWaiting.has(w) ? Promise.resolve(byWaiting.get(w)!) : Promise.reject(w.signal?.reason)));
    } finally {
      for (const w of live) w.signal?.removeEventListener("abort", onAbort);
    }
  }
}
