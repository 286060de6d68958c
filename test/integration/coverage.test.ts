/**
 * The coverage meter through the real HTTP app and a real PostgreSQL: hand-computed
 * cases with exact numbers, then a differential test against the in-memory formula
 * (src/core/coverage.ts) on random DAGs, then the bound on SQL statements.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, type NodeSpec } from "../helpers/fixtures.ts";
import { computeCoverageReference, finalizeCoverage, findGaps, type Edge, type NodeStats } from "../../src/core/coverage.ts";
import { loadCoverageStats } from "../../src/db/coverage.ts";
import * as schema from "../../src/db/schema.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

/** Fixed ids so that the node_id tie-break of the gaps order is known in advance. */
const id = (prefix: string, n: number) => `${prefix}0000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

async function coverage(agentId: string) {
  const res = await ctx.request("GET", `agents/${agentId}/coverage`);
  expect(res.status).toBe(200);
  return res.body;
}

async function gaps(agentId: string, threshold?: number | string) {
  const res = await ctx.request("GET", `agents/${agentId}/gaps${threshold === undefined ? "" : `?threshold=${threshold}`}`);
  expect(res.status).toBe(200);
  return res.body;
}

async function agentView(agentId: string) {
  const res = await ctx.request("GET", `agents/${agentId}`);
  expect(res.status).toBe(200);
  return res.body;
}

const chunkTexts = (n: number) => Array.from({ length: n }, (_, i) => `chunk ${i}`);

/**
 * The hand-computed case. Version hand-1:
 *
 *        A            X
 *       / \           |
 *      B   C          Y
 *       \ /
 *        D
 *        |
 *        E
 *
 * Version hand-2 has the same node ids with an extra edge A -> X, and its own mappings:
 * neither may leak into an agent of hand-1.
 */
const H = { A: id("a", 1), B: id("b", 2), C: id("c", 3), D: id("d", 4), E: id("e", 5), X: id("f", 6), Y: id("f", 7) };
const V1 = "hand-1";
const V2 = "hand-2";

describe("hand-computed DAG", () => {
  beforeAll(async () => {
    await postTaxonomy(ctx, V1, [
      { node_id: H.A, label: "A" },
      { node_id: H.B, label: "B", parent_ids: [H.A] },
      { node_id: H.C, label: "C", parent_ids: [H.A] },
      { node_id: H.D, label: "D", parent_ids: [H.B, H.C] },
      { node_id: H.E, label: "E", parent_ids: [H.D] },
      { node_id: H.X, label: "X" },
      { node_id: H.Y, label: "Y", parent_ids: [H.X] },
    ]);
    await postTaxonomy(ctx, V2, [
      { node_id: H.A, label: "A" },
      { node_id: H.B, label: "B", parent_ids: [H.A] },
      { node_id: H.C, label: "C", parent_ids: [H.A] },
      { node_id: H.D, label: "D", parent_ids: [H.B, H.C] },
      { node_id: H.E, label: "E", parent_ids: [H.D] },
      { node_id: H.X, label: "X", parent_ids: [H.A] },
      { node_id: H.Y, label: "Y", parent_ids: [H.X] },
    ]);
    const m = (node: string, confidence: number, version = V1) => ({ node_id: node, version, confidence });
    // d1: D and B (B at exactly 0.7: counts).
    await postDocument(ctx, { chunks: chunkTexts(3), mappings: [m(H.D, 0.9), m(H.B, 0.7)] });
    // d2: C at 0.6999 (does not count), E.
    await postDocument(ctx, { chunks: chunkTexts(2), mappings: [m(H.C, 0.6999), m(H.E, 0.95)] });
    // d3: only A at 0.69999999: counts nowhere, so not in the totals either.
    await postDocument(ctx, { chunks: chunkTexts(1), mappings: [m(H.A, 0.69999999)] });
    // d4: X, outside the scope in hand-1 (but reachable from A in hand-2).
    await postDocument(ctx, { chunks: chunkTexts(4), mappings: [m(H.X, 1)] });
    // d5: D and E (E at exactly 0.7).
    await postDocument(ctx, { chunks: chunkTexts(5), mappings: [m(H.D, 0.8), m(H.E, 0.7)] });
    // d6: A, no chunks at all.
    await postDocument(ctx, { chunks: [], mappings: [m(H.A, 1)] });
    // d7: mapped only in hand-2, to every node, with full confidence.
    await postDocument(ctx, { chunks: chunkTexts(9), mappings: Object.values(H).map((n) => m(n, 1, V2)) });
    // d8: C in hand-2 only, D in hand-1 below the threshold.
    await postDocument(ctx, { chunks: chunkTexts(6), mappings: [m(H.C, 1, V2), m(H.D, 0.5)] });
  });

  const createHandAgent = (extra: Record<string, unknown> = {}) =>
    postAgent(ctx, { taxonomy_node_ids: [H.A], taxonomy_version: V1, coverage_targets: { [H.D]: 2, [H.E]: 4 }, ...extra });

  // A: {d6} 1 doc, 0 chunks, target 10 -> 10%
  // B: {d1} 1 doc, 3 chunks, target 10 -> 10%
  // C: {}   0,     0,        target 10 -> 0%
  // D: {d1, d5} 2 docs, 8 chunks, target 2 -> 100%
  // E: {d2, d5} 2 docs, 7 chunks, target 4 -> 50%
  // overall: (1 + 1 + 0 + 2 + 2) / (10 + 10 + 10 + 2 + 4) = 6/36 = 16.666... -> 16.67
  // total_documents: {d1, d2, d5, d6} = 4; total_chunks: 3 + 2 + 5 + 0 = 10
  const HAND_NODES = {
    [H.A]: { document_count: 1, chunk_count: 0, target: 10, coverage_percent: 10 },
    [H.B]: { document_count: 1, chunk_count: 3, target: 10, coverage_percent: 10 },
    [H.C]: { document_count: 0, chunk_count: 0, target: 10, coverage_percent: 0 },
    [H.D]: { document_count: 2, chunk_count: 8, target: 2, coverage_percent: 100 },
    [H.E]: { document_count: 2, chunk_count: 7, target: 4, coverage_percent: 50 },
  };

  test("GET /coverage returns the exact hand-computed figures (diamond counted once, 0.7 in, 0.6999 out)", async () => {
    const agent = await createHandAgent();
    const before = Date.now();
    const body = await coverage(agent.agent_id);
    expect(body).toEqual({
      agent_id: agent.agent_id,
      overall_coverage: 16.67,
      total_documents: 4,
      total_chunks: 10,
      node_coverage: HAND_NODES,
      version: V1,
      calculated_at: expect.any(String),
    });
    const at = Date.parse(body.calculated_at);
    expect(at).toBeGreaterThanOrEqual(before - 1000);
    expect(at).toBeLessThanOrEqual(Date.now() + 1000);
  });

  test("GET /coverage stores coverage_percent, total_documents, total_chunks and last_coverage_update on the agent", async () => {
    const agent = await createHandAgent();
    const fresh = await agentView(agent.agent_id);
    expect(fresh).toMatchObject({ coverage_percent: 0, total_documents: 0, total_chunks: 0, last_coverage_update: null });

    const body = await coverage(agent.agent_id);
    const stored = await agentView(agent.agent_id);
    expect(stored).toMatchObject({ coverage_percent: 16.67, total_documents: 4, total_chunks: 10 });
    expect(typeof stored.last_coverage_update).toBe("string");
    expect(Date.parse(stored.last_coverage_update)).toBe(Date.parse(body.calculated_at));
  });

  test("the listing's min_coverage filter sees the stored figure", async () => {
    const agent = await createHandAgent({ name: "min-coverage-probe" });
    await coverage(agent.agent_id);
    const above = await ctx.request("GET", "agents?q=min-coverage-probe&min_coverage=16.67");
    expect(above.status).toBe(200);
    expect(above.body.agents.map((a: { agent_id: string }) => a.agent_id)).toEqual([agent.agent_id]);
    const beyond = await ctx.request("GET", "agents?q=min-coverage-probe&min_coverage=16.68");
    expect(beyond.body.agents).toEqual([]);
  });

  test("coverage_targets set in POST /agents/from-taxonomy are returned on the agent and used per node", async () => {
    const agent = await postAgent(ctx, {
      taxonomy_node_ids: [H.A],
      taxonomy_version: V1,
      coverage_targets: { [H.A]: 1, [H.C]: 3, [H.D]: 1 },
    });
    expect((await agentView(agent.agent_id)).coverage_targets).toEqual({ [H.A]: 1, [H.C]: 3, [H.D]: 1 });
    const body = await coverage(agent.agent_id);
    // A 1/1, B 1/10, C 0/3, D min(2,1)/1, E 2/10: (1 + 1 + 0 + 1 + 2) / (1 + 10 + 3 + 1 + 10) = 5/25 = 20%.
    expect(body.overall_coverage).toBe(20);
    expect(body.node_coverage[H.A]).toEqual({ document_count: 1, chunk_count: 0, target: 1, coverage_percent: 100 });
    expect(body.node_coverage[H.C]).toEqual({ document_count: 0, chunk_count: 0, target: 3, coverage_percent: 0 });
    expect(body.node_coverage[H.D]).toEqual({ document_count: 2, chunk_count: 8, target: 1, coverage_percent: 100 });
    expect(body.node_coverage[H.E]).toEqual({ document_count: 2, chunk_count: 7, target: 10, coverage_percent: 20 });
  });

  test("PATCH coverage_targets replaces the whole set of targets and the next coverage uses it", async () => {
    const agent = await createHandAgent();
    expect((await coverage(agent.agent_id)).overall_coverage).toBe(16.67);

    const patched = await ctx.request("PATCH", `agents/${agent.agent_id}`, { body: { coverage_targets: { [H.C]: 1 } } });
    expect(patched.status).toBe(200);
    expect(patched.body.coverage_targets).toEqual({ [H.C]: 1 });
    let body = await coverage(agent.agent_id);
    // D and E are back to the default 10: (1 + 1 + 0 + 2 + 2) / (10 + 10 + 1 + 10 + 10) = 6/41 = 14.634... -> 14.63
    expect(body.overall_coverage).toBe(14.63);
    expect(body.node_coverage[H.C].target).toBe(1);
    expect(body.node_coverage[H.D]).toEqual({ document_count: 2, chunk_count: 8, target: 10, coverage_percent: 20 });
    expect((await agentView(agent.agent_id)).coverage_percent).toBe(14.63);

    // A target for a node outside the scope changes nothing in the sums.
    await ctx.request("PATCH", `agents/${agent.agent_id}`, { body: { coverage_targets: { [H.E]: 3, [H.X]: 1 } } });
    body = await coverage(agent.agent_id);
    // (1 + 1 + 0 + 2 + 2) / (10 + 10 + 10 + 10 + 3) = 6/43 = 13.953... -> 13.95
    expect(body.overall_coverage).toBe(13.95);
    expect(body.node_coverage[H.E]).toEqual({ document_count: 2, chunk_count: 7, target: 3, coverage_percent: 66.67 });
    expect(body.node_coverage[H.X]).toBeUndefined();

    // An empty set: every node at the default target, 6/50 = 12%.
    await ctx.request("PATCH", `agents/${agent.agent_id}`, { body: { coverage_targets: {} } });
    expect((await coverage(agent.agent_id)).overall_coverage).toBe(12);

    // A PATCH without coverage_targets keeps them.
    await ctx.request("PATCH", `agents/${agent.agent_id}`, { body: { coverage_targets: { [H.A]: 2 } } });
    await ctx.request("PATCH", `agents/${agent.agent_id}`, { body: { name: "renamed" } });
    expect((await agentView(agent.agent_id)).coverage_targets).toEqual({ [H.A]: 2 });
    // (1 + 1 + 0 + 2 + 2) / (2 + 40) = 6/42 = 14.285... -> 14.29
    expect((await coverage(agent.agent_id)).overall_coverage).toBe(14.29);
  });

  test("mappings and edges of another taxonomy version do not count", async () => {
    // Same root, same node ids, but version hand-2: A -> X -> Y is in scope there, and d7/d8 count.
    const v2 = await postAgent(ctx, { taxonomy_node_ids: [H.A], taxonomy_version: V2 });
    const body = await coverage(v2.agent_id);
    // Every node of hand-2 has d7 (9 chunks); C also has d8 (6 chunks). Nothing from hand-1 counts.
    expect(body).toMatchObject({ overall_coverage: 11.43, total_documents: 2, total_chunks: 15, version: V2 });
    // (7 * 1 + 1) / (7 * 10) = 8/70 = 11.428... -> 11.43
    expect(Object.keys(body.node_coverage).sort()).toEqual(Object.values(H).sort());
    expect(body.node_coverage[H.C]).toEqual({ document_count: 2, chunk_count: 15, target: 10, coverage_percent: 20 });
    expect(body.node_coverage[H.X]).toEqual({ document_count: 1, chunk_count: 9, target: 10, coverage_percent: 10 });

    // And the hand-1 agent is unchanged by all of hand-2's data.
    const v1 = await createHandAgent();
    expect((await coverage(v1.agent_id)).node_coverage).toEqual(HAND_NODES);
  });

  test("a root set with one root below another counts the shared nodes once", async () => {
    // Roots A and D: D and E are both roots' descendants; the scope is still A..E.
    const agent = await postAgent(ctx, {
      taxonomy_node_ids: [H.D, H.A, H.E],
      taxonomy_version: V1,
      coverage_targets: { [H.D]: 2, [H.E]: 4 },
    });
    const body = await coverage(agent.agent_id);
    expect(body.node_coverage).toEqual(HAND_NODES);
    expect(body.overall_coverage).toBe(16.67);
  });

  test("an agent whose scope has no counted documents is 0%, with every node listed", async () => {
    const agent = await postAgent(ctx, { taxonomy_node_ids: [H.Y], taxonomy_version: V1 });
    expect(await coverage(agent.agent_id)).toMatchObject({
      overall_coverage: 0,
      total_documents: 0,
      total_chunks: 0,
      node_coverage: { [H.Y]: { document_count: 0, chunk_count: 0, target: 10, coverage_percent: 0 } },
    });
  });

  test("GET /gaps at the default threshold 0.5 lists the exact gaps, most missing first, then by node_id", async () => {
    const agent = await createHandAgent();
    const before = Date.now();
    const body = await gaps(agent.agent_id);
    // A 1/10 needs 5 -> 4; B 1/10 -> 4; C 0/10 -> 5; D full; E 2/4 is exactly 50%: not a gap.
    expect(body).toEqual({
      agent_id: agent.agent_id,
      threshold: 0.5,
      gaps: [
        { node_id: H.C, current_coverage: 0, target_coverage: 50, missing_docs: 5, recommendation: expect.any(String) },
        { node_id: H.A, current_coverage: 10, target_coverage: 50, missing_docs: 4, recommendation: expect.any(String) },
        { node_id: H.B, current_coverage: 10, target_coverage: 50, missing_docs: 4, recommendation: expect.any(String) },
      ],
      detected_at: expect.any(String),
    });
    expect(Date.parse(body.detected_at)).toBeGreaterThanOrEqual(before - 1000);
    for (const gap of body.gaps) expect(gap.recommendation).toContain(gap.node_id);
  });

  test("GET /gaps?threshold=0.7 needs ceil(0.7 * target) documents per node", async () => {
    const agent = await createHandAgent();
    const body = await gaps(agent.agent_id, 0.7);
    expect(body.threshold).toBe(0.7);
    // C 0/10 -> 7; A, B 1/10 -> 6; E 2/4 = 50% < 70% -> ceil(2.8) - 2 = 1; D full.
    expect(body.gaps.map((g: { node_id: string; missing_docs: number; current_coverage: number; target_coverage: number }) => [g.node_id, g.missing_docs, g.current_coverage, g.target_coverage])).toEqual([
      [H.C, 7, 0, 70],
      [H.A, 6, 10, 70],
      [H.B, 6, 10, 70],
      [H.E, 1, 50, 70],
    ]);
  });

  test("GET /gaps with threshold 0 gives no gaps, threshold 1 every node that is not full, 0.1 only the empty node", async () => {
    const agent = await createHandAgent();
    expect((await gaps(agent.agent_id, 0)).gaps).toEqual([]);
    const all = await gaps(agent.agent_id, 1);
    expect(all.gaps.map((g: { node_id: string; missing_docs: number }) => [g.node_id, g.missing_docs])).toEqual([
      [H.C, 10],
      [H.A, 9],
      [H.B, 9],
      [H.E, 2],
    ]);
    expect(all.gaps.every((g: { target_coverage: number }) => g.target_coverage === 100)).toBe(true);
    // A and B at exactly 10% are not gaps at threshold 0.1.
    expect((await gaps(agent.agent_id, 0.1)).gaps.map((g: { node_id: string; missing_docs: number }) => [g.node_id, g.missing_docs])).toEqual([[H.C, 1]]);
  });

  test("GET /gaps rejects a threshold outside [0, 1] or not a number as bad input", async () => {
    const agent = await createHandAgent();
    for (const bad of ["1.5", "-0.1", "abc"]) {
      const res = await ctx.request("GET", `agents/${agent.agent_id}/gaps?threshold=${bad}`);
      expect([400, 422]).toContain(res.status);
      expect(typeof res.body.error.code).toBe("string");
    }
  });

  test("coverage and gaps of an unknown agent are 404", async () => {
    const unknown = id("9", 999);
    expect((await ctx.request("GET", `agents/${unknown}/coverage`)).status).toBe(404);
    expect((await ctx.request("GET", `agents/${unknown}/gaps`)).status).toBe(404);
  });
});

describe("deleting a document", () => {
  test("a deleted document (DELETE /documents/{id}) stops counting, in the nodes and the totals", async () => {
    const P = id("1", 1);
    const Q = id("2", 2);
    await postTaxonomy(ctx, "del-1", [
      { node_id: P, label: "P" },
      { node_id: Q, label: "Q", parent_ids: [P] },
    ]);
    const e1 = await postDocument(ctx, {
      chunks: chunkTexts(2),
      mappings: [
        { node_id: P, version: "del-1", confidence: 0.9 },
        { node_id: Q, version: "del-1", confidence: 0.9 },
      ],
    });
    await postDocument(ctx, { chunks: chunkTexts(3), mappings: [{ node_id: Q, version: "del-1", confidence: 0.8 }] });
    const agent = await postAgent(ctx, { taxonomy_node_ids: [P], taxonomy_version: "del-1" });

    // P {e1}, Q {e1, e2}: 3/20 = 15%; 2 documents, 5 chunks.
    expect(await coverage(agent.agent_id)).toMatchObject({
      overall_coverage: 15,
      total_documents: 2,
      total_chunks: 5,
      node_coverage: {
        [P]: { document_count: 1, chunk_count: 2, target: 10, coverage_percent: 10 },
        [Q]: { document_count: 2, chunk_count: 5, target: 10, coverage_percent: 20 },
      },
    });

    const del = await ctx.request("DELETE", `documents/${e1.doc_id}`);
    expect(del.status).toBe(204);
    expect((await ctx.request("DELETE", `documents/${e1.doc_id}`)).status).toBe(404);

    // P {}, Q {e2}: 1/20 = 5%; 1 document, 3 chunks.
    expect(await coverage(agent.agent_id)).toMatchObject({
      overall_coverage: 5,
      total_documents: 1,
      total_chunks: 3,
      node_coverage: {
        [P]: { document_count: 0, chunk_count: 0, target: 10, coverage_percent: 0 },
        [Q]: { document_count: 1, chunk_count: 3, target: 10, coverage_percent: 10 },
      },
    });
    expect(await agentView(agent.agent_id)).toMatchObject({ coverage_percent: 5, total_documents: 1, total_chunks: 3 });
    expect((await gaps(agent.agent_id)).gaps.map((g: { node_id: string; missing_docs: number }) => [g.node_id, g.missing_docs])).toEqual([
      [P, 5],
      [Q, 4],
    ]);
  });
});

// ---------------------------------------------------------------------------
// Differential test: random DAGs through the API vs. the formula in memory.
// ---------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const sample = <T>(xs: readonly T[], k: number): T[] => {
    const copy = [...xs];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy.slice(0, Math.min(k, copy.length));
  };
  const uuid = () => {
    const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16));
    hex[12] = "4";
    hex[16] = "89ab"[Math.floor(next() * 4)]!;
    const s = hex.join("");
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
  };
  return { next, int, pick, sample, uuid };
}

type Rng = ReturnType<typeof prng>;

/** Confidences that sit on, just under and just over the 0.7 threshold, plus the ends and random ones. */
function confidence(rng: Rng): number {
  const r = rng.next();
  if (r < 0.25) return 0.7;
  if (r < 0.35) return 0.6999;
  if (r < 0.4) return 0.69999999;
  if (r < 0.45) return 0.7000001;
  if (r < 0.5) return rng.pick([0, 1]);
  if (r < 0.75) return Math.round(rng.next() * 100) / 100;
  return rng.next();
}

interface Corpus {
  version: string;
  nodeIds: string[];
  edges: Edge[];
  specs: NodeSpec[];
}

/** A random DAG: parents only from lower indexes (so acyclic), several parents per node, several roots. */
function randomDag(rng: Rng, version: string, nodeIds: string[]): Corpus {
  const edges: Edge[] = [];
  const specs: NodeSpec[] = nodeIds.map((nodeId, i) => {
    const parentCount = i === 0 ? 0 : rng.next() < 0.12 ? 0 : rng.int(1, 3);
    const parents = rng.sample(nodeIds.slice(0, i), parentCount);
    for (const p of parents) edges.push({ parentId: p, childId: nodeId });
    return { node_id: nodeId, label: `node ${i}`, ...(parents.length > 0 ? { parent_ids: parents } : {}) };
  });
  return { version, nodeIds, edges, specs };
}

interface RandomDoc {
  doc_id: string;
  chunks: number;
  mappings: { node_id: string; version: string; confidence: number }[];
}

/** What the random cases covered, so that a change to the generator cannot quietly make them trivial. */
const exercised = {
  agents: 0,
  scopeNodes: 0,
  sharedDescendants: 0,
  countedAtExactly07: 0,
  excludedJustBelow07: 0,
  cappedNodes: 0,
  customTargetsInScope: 0,
  docsOnSeveralScopeNodes: 0,
  record(corpus: Corpus, nodes: NodeStats[], mappings: { docId: string; nodeId: string; confidence: number }[], targets: Record<string, number>) {
    const inScope = new Set(nodes.map((n) => n.nodeId));
    const parentsInScope = new Map<string, number>();
    for (const e of corpus.edges)
      if (inScope.has(e.parentId)) parentsInScope.set(e.childId, (parentsInScope.get(e.childId) ?? 0) + 1);
    const counted = mappings.filter((m) => inScope.has(m.nodeId) && m.confidence >= 0.7);
    const nodesPerDoc = new Map<string, number>();
    for (const m of counted) nodesPerDoc.set(m.docId, (nodesPerDoc.get(m.docId) ?? 0) + 1);
    this.agents++;
    this.scopeNodes += nodes.length;
    this.sharedDescendants += [...parentsInScope.values()].filter((k) => k >= 2).length;
    this.countedAtExactly07 += counted.filter((m) => m.confidence === 0.7).length;
    this.excludedJustBelow07 += mappings.filter((m) => inScope.has(m.nodeId) && m.confidence < 0.7 && m.confidence > 0.69).length;
    this.cappedNodes += nodes.filter((n) => n.documentCount > n.target).length;
    this.customTargetsInScope += nodes.filter((n) => targets[n.nodeId] !== undefined).length;
    this.docsOnSeveralScopeNodes += [...nodesPerDoc.values()].filter((k) => k >= 2).length;
  },
};

describe("differential: random DAGs through the API match the in-memory formula", () => {
  const SEEDS = [1, 2, 3, 4, 5, 6];

  for (const seed of SEEDS) {
    test(`seed ${seed}`, async () => {
      const rng = prng(seed * 7919);
      const nodeCount = rng.int(30, 80);
      const nodeIds = Array.from({ length: nodeCount }, () => rng.uuid());
      const main = randomDag(rng, `diff-${seed}`, nodeIds);
      // Another version over the same node ids (plus a few of its own), with a different random DAG.
      const alt = randomDag(rng, `diff-${seed}-alt`, [...rng.sample(nodeIds, nodeCount), ...Array.from({ length: 5 }, () => rng.uuid())]);
      await postTaxonomy(ctx, main.version, main.specs);
      await postTaxonomy(ctx, alt.version, alt.specs);

      const docs: RandomDoc[] = Array.from({ length: rng.int(60, 160) }, () => {
        const mappings = rng.sample(main.nodeIds, rng.pick([0, 1, 1, 2, 2, 3, 4, 6])).map((n) => ({
          node_id: n,
          version: main.version,
          confidence: confidence(rng),
        }));
        if (rng.next() < 0.3)
          for (const n of rng.sample(alt.nodeIds, rng.int(1, 3))) mappings.push({ node_id: n, version: alt.version, confidence: confidence(rng) });
        return { doc_id: rng.uuid(), chunks: rng.pick([0, 1, 1, 2, 3, 5, 8, 13]), mappings };
      });
      const bulk = await ctx.request("POST", "documents/bulk", {
        body: {
          documents: docs.map((d) => ({
            doc_id: d.doc_id,
            title: `doc ${d.doc_id}`,
            chunks: chunkTexts(d.chunks).map((text) => ({ text })),
            mappings: d.mappings,
          })),
        },
      });
      expect(bulk.status).toBe(201);
      expect(bulk.body.total).toBe(docs.length);

      const chunkCounts = new Map(docs.map((d) => [d.doc_id, d.chunks]));
      const mappingsOf = (version: string) =>
        docs.flatMap((d) => d.mappings.filter((m) => m.version === version).map((m) => ({ docId: d.doc_id, nodeId: m.node_id, confidence: m.confidence })));

      const agents = [main, main, main, main, alt].map((corpus) => {
        // Mostly roots near the top of the DAG (big scopes, many shared descendants), sometimes anywhere.
        const pool = rng.next() < 0.7 ? corpus.nodeIds.slice(0, Math.max(3, corpus.nodeIds.length >> 2)) : corpus.nodeIds;
        const roots = rng.sample(pool, rng.pick([1, 1, 2, 3, 4]));
        if (rng.next() < 0.2) roots.push(roots[0]!); // a repeated root is one root
        const targets: Record<string, number> = {};
        // Some targets inside the scope, some outside it; some below the documents (capped), some above.
        for (const n of rng.sample(corpus.nodeIds, rng.int(0, 25))) targets[n] = rng.pick([1, 1, 2, 3, rng.int(1, 15)]);
        return { corpus, roots, targets };
      });

      let nonEmptyGaps = 0;
      let scopeSizes = 0;
      for (const a of agents) {
        const created = await postAgent(ctx, {
          taxonomy_node_ids: a.roots,
          taxonomy_version: a.corpus.version,
          coverage_targets: a.targets,
        });
        const expected = computeCoverageReference({
          roots: a.roots,
          edges: a.corpus.edges,
          mappings: mappingsOf(a.corpus.version),
          chunkCounts,
          targets: new Map(Object.entries(a.targets)),
          confidenceThreshold: 0.7,
          defaultTarget: 10,
        });
        scopeSizes += expected.nodes.length;
        const report = finalizeCoverage(expected.nodes, expected.totals);
        exercised.record(a.corpus, expected.nodes, mappingsOf(a.corpus.version), a.targets);

        const body = await coverage(created.agent_id);
        expect({
          overall_coverage: body.overall_coverage,
          total_documents: body.total_documents,
          total_chunks: body.total_chunks,
          node_coverage: body.node_coverage,
        }).toEqual(report);
        expect(body.version).toBe(a.corpus.version);
        expect(await agentView(created.agent_id)).toMatchObject({
          coverage_percent: report.overall_coverage,
          total_documents: report.total_documents,
          total_chunks: report.total_chunks,
        });

        for (const threshold of [undefined, 0, 0.7, 1, 0.33, Math.round(rng.next() * 100) / 100]) {
          const got = await gaps(created.agent_id, threshold);
          const want = findGaps(expected.nodes, threshold ?? 0.5);
          expect(got.threshold).toBe(threshold ?? 0.5);
          expect(got.gaps).toEqual(want);
          nonEmptyGaps += want.length > 0 ? 1 : 0;
        }
      }
      // The generated cases are not degenerate: scopes have many nodes and gaps exist.
      expect(scopeSizes).toBeGreaterThan(agents.length);
      expect(nonEmptyGaps).toBeGreaterThan(0);
    });
  }

  test("the random cases exercised every rule of the formula", () => {
    expect(exercised.agents).toBe(SEEDS.length * 5);
    expect(exercised.scopeNodes).toBeGreaterThan(300);
    expect(exercised.sharedDescendants).toBeGreaterThan(50);
    expect(exercised.countedAtExactly07).toBeGreaterThan(50);
    expect(exercised.excludedJustBelow07).toBeGreaterThan(50);
    expect(exercised.cappedNodes).toBeGreaterThan(5);
    expect(exercised.customTargetsInScope).toBeGreaterThan(20);
    expect(exercised.docsOnSeveralScopeNodes).toBeGreaterThan(50);
  });
});

// ---------------------------------------------------------------------------
// Bounded SQL: the meter's aggregates are one statement, whatever the scope size.
// ---------------------------------------------------------------------------

describe("loadCoverageStats", () => {
  test("issues exactly one SQL statement for a scope of 5 nodes and for a scope of 200 nodes", async () => {
    const rng = prng(42);
    const version = "bounded-1";
    // Component S: s0 with 4 children (scope of 5). Component T: t0 and 199 descendants (scope of 200).
    const s = Array.from({ length: 5 }, () => rng.uuid());
    const t = Array.from({ length: 200 }, () => rng.uuid());
    const big = randomDag(rng, version, t);
    // Every node of T after the first needs a parent so that all 200 are reachable from t0.
    const tSpecs = big.specs.map((spec, i) => (i > 0 && !spec.parent_ids ? { ...spec, parent_ids: [t[rng.int(0, i - 1)]!] } : spec));
    const tEdges = tSpecs.flatMap((spec) => (spec.parent_ids ?? []).map((p) => ({ parentId: p, childId: spec.node_id })));
    await postTaxonomy(ctx, version, [
      { node_id: s[0]!, label: "s0" },
      ...s.slice(1).map((n, i) => ({ node_id: n, label: `s${i + 1}`, parent_ids: [s[0]!] })),
      ...tSpecs,
    ]);
    const docs = Array.from({ length: 120 }, () => ({
      doc_id: rng.uuid(),
      chunks: rng.int(0, 4),
      mappings: rng.sample([...s, ...t], rng.int(1, 5)).map((n) => ({ node_id: n, version, confidence: confidence(rng) })),
    }));
    const bulk = await ctx.request("POST", "documents/bulk", {
      body: {
        documents: docs.map((d) => ({ doc_id: d.doc_id, title: "d", chunks: chunkTexts(d.chunks).map((text) => ({ text })), mappings: d.mappings })),
      },
    });
    expect(bulk.status).toBe(201);
    const small = await postAgent(ctx, { taxonomy_node_ids: [s[0]!], taxonomy_version: version });
    const large = await postAgent(ctx, { taxonomy_node_ids: [t[0]!], taxonomy_version: version, coverage_targets: { [t[5]!]: 2 } });

    const statements: string[] = [];
    const sql = postgres(ctx.testDb.url, { max: 1, onnotice: () => {}, debug: (_conn, query) => statements.push(query) });
    try {
      const db = drizzle(sql, { schema });
      await sql`select 1`; // connect (and let postgres.js fetch its type info) before counting
      const mappings = docs.flatMap((d) => d.mappings.map((m) => ({ docId: d.doc_id, nodeId: m.node_id, confidence: m.confidence })));
      const chunkCounts = new Map(docs.map((d) => [d.doc_id, d.chunks]));
      const byNode = <T extends { nodeId: string }>(xs: T[]) => [...xs].sort((x, y) => (x.nodeId < y.nodeId ? -1 : 1));

      for (const [agent, roots, edges, size, targets] of [
        [small, [s[0]!], s.slice(1).map((n) => ({ parentId: s[0]!, childId: n })), 5, new Map<string, number>()],
        [large, [t[0]!], tEdges, 200, new Map([[t[5]!, 2]])],
      ] as const) {
        statements.length = 0;
        const got = await loadCoverageStats(db, { agentId: agent.agent_id, roots, version, confidenceThreshold: 0.7, defaultTarget: 10 });
        expect(statements).toHaveLength(1);
        expect(got.nodes).toHaveLength(size);
        const want = computeCoverageReference({ roots, edges, mappings, chunkCounts, targets, confidenceThreshold: 0.7, defaultTarget: 10 });
        expect(byNode(got.nodes)).toEqual(byNode(want.nodes));
        expect(got.totals).toEqual(want.totals);
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});
