/** Statements on taxonomy_nodes and taxonomy_edges. */
import { sql } from "drizzle-orm";
import type { Db, DbOrTx } from "./client.ts";
import { AppError } from "../core/errors.ts";
import { findCycle } from "../core/taxonomy.ts";
import { toIso } from "./values.ts";

export interface TaxonomyNodeInput {
  node_id: string;
  label: string;
  parent_ids?: string[];
}

export interface TaxonomyNodeView {
  node_id: string;
  label: string;
  version: string;
  parent_ids: string[];
  created_at: string;
}

/**
 * Creates or extends a taxonomy version in one transaction: labels of existing
 * nodes are updated, edges are added, and the whole version is checked for
 * cycles before commit. A per-version advisory lock serialises writers, so two
 * concurrent requests cannot each add half of a cycle.
 */
/** A node listed twice in one request is ambiguous (which label?): refused before anything is written. */
function refuseDuplicateNodes(nodes: readonly TaxonomyNodeInput[]) {
  const seen = new Map<string, number>();
  nodes.forEach((n, i) => {
    const first = seen.get(n.node_id);
    if (first !== undefined)
      throw new AppError("validation_error", `invalid body: node ${n.node_id} is listed twice (nodes ${first} and ${i})`, {
        on: "body",
        issues: [{ path: `/nodes/${i}/node_id`, message: `duplicate of /nodes/${first}/node_id` }],
      });
    seen.set(n.node_id, i);
  });
}

export async function upsertTaxonomy(db: Db, version: string, nodes: TaxonomyNodeInput[]) {
  refuseDuplicateNodes(nodes);
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${"taxonomy:" + version}, 0))`);
    const nodeRows = JSON.stringify(nodes.map((n) => ({ node_id: n.node_id, label: n.label })));
    await tx.execute(sql`
      insert into taxonomy_nodes (node_id, version, label)
      select x.node_id, ${version}, x.label
      from jsonb_to_recordset(${nodeRows}::jsonb) as x(node_id uuid, label text)
      on conflict (node_id, version) do update set label = excluded.label`);

    // A parent named twice for one node is one edge.
    const edges = nodes.flatMap((n) => [...new Set(n.parent_ids ?? [])].map((p) => ({ parent_id: p, child_id: n.node_id })));
    if (edges.length > 0) {
      const selfLoop = edges.find((e) => e.parent_id === e.child_id);
      if (selfLoop)
        throw new AppError("taxonomy_cycle", `node ${selfLoop.child_id} cannot be its own parent in version ${version}`, {
          version,
          cycle: [selfLoop.child_id, selfLoop.child_id],
        });
      const edgeRows = JSON.stringify(edges);
      const missing = await tx.execute<{ node_id: string }>(sql`
        select distinct x.parent_id as node_id
        from jsonb_to_recordset(${edgeRows}::jsonb) as x(parent_id uuid, child_id uuid)
        where not exists (select 1 from taxonomy_nodes n where n.node_id = x.parent_id and n.version = ${version})`);
      if (missing.length > 0)
        throw new AppError("unknown_taxonomy_node", `parent nodes not found in version ${version}`, {
          version,
          node_ids: missing.map((r) => r.node_id),
        });
      await tx.execute(sql`
        insert into taxonomy_edges (parent_id, child_id, version)
        select x.parent_id, x.child_id, ${version}
        from jsonb_to_recordset(${edgeRows}::jsonb) as x(parent_id uuid, child_id uuid)
        on conflict do nothing`);
      const all = await tx.execute<{ parent_id: string; child_id: string }>(
        sql`select parent_id, child_id from taxonomy_edges where version = ${version}`,
      );
      const cycle = findCycle(all.map((e) => ({ parentId: e.parent_id, childId: e.child_id })));
      if (cycle)
        throw new AppError("taxonomy_cycle", `these edges would make a cycle in version ${version}`, { version, cycle });
    }
    const [count] = await tx.execute<{ nodes: number; edges: number }>(sql`
      select (select count(*)::int from taxonomy_nodes where version = ${version}) as nodes,
             (select count(*)::int from taxonomy_edges where version = ${version}) as edges`);
    return { version, nodes_written: nodes.length, edges_written: edges.length, total_nodes: count!.nodes, total_edges: count!.edges };
  });
}

export async function listTaxonomyNodes(db: DbOrTx, version: string): Promise<TaxonomyNodeView[]> {
  const rows = await db.execute<Omit<TaxonomyNodeView, "created_at"> & { created_at: string | Date }>(sql`
    select n.node_id, n.label, n.version, n.created_at,
           coalesce(array_agg(e.parent_id order by e.parent_id) filter (where e.parent_id is not null), '{}') as parent_ids
    from taxonomy_nodes n
    left join taxonomy_edges e on e.child_id = n.node_id and e.version = n.version
    where n.version = ${version}
    group by n.node_id, n.version
    order by n.created_at, n.node_id`);
  return rows.map((r) => ({ ...r, created_at: toIso(r.created_at) }));
}

/** Node ids of `ids` that do not exist in `version`. */
export async function missingNodes(db: DbOrTx, version: string, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await db.execute<{ node_id: string }>(sql`
    select x.node_id from unnest(${toPgArray(ids)}::uuid[]) as x(node_id)
    where not exists (select 1 from taxonomy_nodes n where n.node_id = x.node_id and n.version = ${version})`);
  return rows.map((r) => r.node_id);
}

/** Newest version that holds every one of `ids`, or null. */
export async function newestVersionHolding(db: DbOrTx, ids: readonly string[]): Promise<string | null> {
  const rows = await db.execute<{ version: string }>(sql`
    select version from taxonomy_nodes
    where node_id = any(${toPgArray(ids)}::uuid[])
    group by version
    having count(distinct node_id) = ${new Set(ids).size}
    order by max(created_at) desc, version desc
    limit 1`);
  return rows[0]?.version ?? null;
}

/** A PostgreSQL array literal for uuid/text values we have already validated. */
export const toPgArray = (values: readonly string[]) => `{${values.map((v) => `"${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`).join(",")}}`;
