/**
 * The coverage formula of domain.md, as pure functions.
 *
 * Production computes per-node aggregates in SQL (src/db/coverage.ts) and hands
 * them to `finalizeCoverage`. `computeCoverageReference` computes the same
 * aggregates from raw rows in memory; tests use it as the oracle the SQL must match.
 */

export interface NodeStats {
  nodeId: string;
  /** |docs(n)|: distinct documents mapped to n at or above the confidence threshold. */
  documentCount: number;
  /** Chunks of those documents. */
  chunkCount: number;
  /** target(n): the agent's coverage_targets row, else the default target. */
  target: number;
}

export interface CoverageTotals {
  /** Distinct documents in the union of docs(n) over the scope. */
  totalDocuments: number;
  /** Chunks of those documents. */
  totalChunks: number;
}

export interface NodeCoverage {
  document_count: number;
  chunk_count: number;
  target: number;
  coverage_percent: number;
}

export interface CoverageReport {
  overall_coverage: number;
  total_documents: number;
  total_chunks: number;
  node_coverage: Record<string, NodeCoverage>;
}

export interface Gap {
  node_id: string;
  current_coverage: number;
  target_coverage: number;
  missing_docs: number;
  recommendation: string;
}

/** Tolerance for products like 0.28 * 25 that binary floating point makes 7.000000000000001. */
const EPSILON = 1e-9;

/**
 * Rounds half up to 2 decimals. `x * 100` is first cut to 15 significant digits, so a value
 * whose exact decimal is a tie (87/4000 = 2.175%, stored as 2.17499999999999982...) rounds
 * up like the decimal it stands for; adding Number.EPSILON only fixed that for values below ~2.
 */
export const round2 = (x: number): number => Math.round(Number((x * 100).toPrecision(15))) / 100;

export function nodeCoveragePercent(documentCount: number, target: number): number {
  return round2((100 * Math.min(documentCount, target)) / target);
}

export function finalizeCoverage(nodes: NodeStats[], totals: CoverageTotals): CoverageReport {
  let covered = 0;
  let wanted = 0;
  const nodeCoverage: Record<string, NodeCoverage> = {};
  for (const n of nodes) {
    covered += Math.min(n.documentCount, n.target);
    wanted += n.target;
    nodeCoverage[n.nodeId] = {
      document_count: n.documentCount,
      chunk_count: n.chunkCount,
      target: n.target,
      coverage_percent: nodeCoveragePercent(n.documentCount, n.target),
    };
  }
  return {
    overall_coverage: wanted === 0 ? 0 : round2((100 * covered) / wanted),
    total_documents: totals.totalDocuments,
    total_chunks: totals.totalChunks,
    node_coverage: nodeCoverage,
  };
}

/**
 * Nodes whose coverage is below 100*threshold, with the documents still missing
 * to reach it; most missing first, then by node id.
 */
export function findGaps(nodes: NodeStats[], threshold: number): Gap[] {
  const gaps: Gap[] = [];
  for (const n of nodes) {
    const ratio = Math.min(n.documentCount, n.target) / n.target;
    if (ratio >= threshold - EPSILON) continue;
    const needed = Math.ceil(threshold * n.target - EPSILON);
    const missing = needed - n.documentCount;
    gaps.push({
      node_id: n.nodeId,
      current_coverage: nodeCoveragePercent(n.documentCount, n.target),
      target_coverage: round2(100 * threshold),
      missing_docs: missing,
      recommendation: `Add ${missing} document${missing === 1 ? "" : "s"} mapped to node ${n.nodeId} with confidence at or above the threshold.`,
    });
  }
  gaps.sort((a, b) => b.missing_docs - a.missing_docs || (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0));
  return gaps;
}

export interface Edge {
  parentId: string;
  childId: string;
}

/** Roots plus every descendant, each once, even where the DAG shares descendants. */
export function expandScope(roots: readonly string[], edges: readonly Edge[]): string[] {
  const children = new Map<string, string[]>();
  for (const e of edges) {
    const list = children.get(e.parentId);
    if (list) list.push(e.childId);
    else children.set(e.parentId, [e.childId]);
  }
  const seen = new Set<string>();
  const stack = [...roots];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    for (const child of children.get(node) ?? []) stack.push(child);
  }
  return [...seen];
}

export interface ReferenceInput {
  roots: readonly string[];
  edges: readonly Edge[];
  mappings: readonly { docId: string; nodeId: string; confidence: number }[];
  chunkCounts: ReadonlyMap<string, number>;
  targets: ReadonlyMap<string, number>;
  confidenceThreshold: number;
  defaultTarget: number;
}

/** The formula straight from its definition, for tests: O(mappings), no cleverness. */
export function computeCoverageReference(input: ReferenceInput): { nodes: NodeStats[]; totals: CoverageTotals } {
  const scope = expandScope(input.roots, input.edges);
  const inScope = new Set(scope);
  const docsByNode = new Map<string, Set<string>>(scope.map((n) => [n, new Set<string>()]));
  for (const m of input.mappings) {
    if (!inScope.has(m.nodeId) || m.confidence < input.confidenceThreshold) continue;
    docsByNode.get(m.nodeId)!.add(m.docId);
  }
  const union = new Set<string>();
  const chunksOf = (docs: Iterable<string>) => {
    let sum = 0;
    for (const d of docs) sum += input.chunkCounts.get(d) ?? 0;
    return sum;
  };
  const nodes = scope.map((nodeId) => {
    const docs = docsByNode.get(nodeId)!;
    for (const d of docs) union.add(d);
    return {
      nodeId,
      documentCount: docs.size,
      chunkCount: chunksOf(docs),
      target: input.targets.get(nodeId) ?? input.defaultTarget,
    };
  });
  return { nodes, totals: { totalDocuments: union.size, totalChunks: chunksOf(union) } };
}
