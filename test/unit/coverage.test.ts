/**
 * The coverage formula of domain.md ("Coverage: the formula") on hand-computed cases.
 * Every expected number below was worked out by hand from the definition, not by
 * running the code.
 */
import { describe, expect, test } from "bun:test";
import {
  computeCoverageReference,
  expandScope,
  finalizeCoverage,
  findGaps,
  nodeCoveragePercent,
  round2,
  type Edge,
  type NodeStats,
  type ReferenceInput,
} from "../../src/core/coverage.ts";

const edge = (parentId: string, childId: string): Edge => ({ parentId, childId });
const stats = (nodeId: string, documentCount: number, target: number, chunkCount = 0): NodeStats => ({
  nodeId,
  documentCount,
  chunkCount,
  target,
});
const byId = (nodes: NodeStats[]) => Object.fromEntries(nodes.map((n) => [n.nodeId, n]));

/** A -> B, A -> C, B -> D, C -> D: D is shared by both branches. */
const DIAMOND: Edge[] = [edge("A", "B"), edge("A", "C"), edge("B", "D"), edge("C", "D")];

const reference = (over: Partial<ReferenceInput>): ReturnType<typeof computeCoverageReference> =>
  computeCoverageReference({
    roots: ["A"],
    edges: DIAMOND,
    mappings: [],
    chunkCounts: new Map(),
    targets: new Map(),
    confidenceThreshold: 0.7,
    defaultTarget: 10,
    ...over,
  });

describe("round2", () => {
  test("rounds to 2 decimals: 1/3 -> 33.33, 2/3 -> 66.67", () => {
    expect(round2((100 * 1) / 3)).toBe(33.33);
    expect(round2((100 * 2) / 3)).toBe(66.67);
    expect(round2(12.5)).toBe(12.5);
    expect(round2(100)).toBe(100);
    expect(round2(0)).toBe(0);
  });

  test("rounds half up on values that binary floating point stores just below the half", () => {
    // 1.005 is stored as 1.00499999999999989...; 100 * 1.005 is 100.49999999999999.
    expect(round2(1.005)).toBe(1.01);
    // 100 * 87 / 4000 = 2.175 exactly, stored as 2.17499999999999982...; half up and half even both say 2.18.
    expect(round2((100 * 87) / 4000)).toBe(2.18);
    expect(round2((100 * 323) / 4000)).toBe(8.08);
    expect(round2(12.345)).toBe(12.35);
  });

  test("rounds every exact tie 100 * a / b (b up to 4000) half up, and every non-tie to the nearest", () => {
    // Exact answer in integers: floor((20000 a + b) / (2 b)) hundredths (half up).
    const wrong: string[] = [];
    for (let b = 1; b <= 4000; b++) {
      for (let a = 0; a <= b; a++) {
        const hundredths = Math.floor((20000 * a + b) / (2 * b));
        const got = round2((100 * a) / b);
        if (got !== hundredths / 100) wrong.push(`${a}/${b}: ${got} != ${hundredths / 100}`);
      }
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });
});

describe("nodeCoveragePercent", () => {
  test("is 100 * docs / target below the target", () => {
    expect(nodeCoveragePercent(0, 10)).toBe(0);
    expect(nodeCoveragePercent(3, 10)).toBe(30);
    expect(nodeCoveragePercent(1, 3)).toBe(33.33);
    expect(nodeCoveragePercent(2, 3)).toBe(66.67);
  });

  test("caps at 100 when the node has more documents than its target", () => {
    expect(nodeCoveragePercent(10, 10)).toBe(100);
    expect(nodeCoveragePercent(25, 10)).toBe(100);
    expect(nodeCoveragePercent(7, 1)).toBe(100);
  });
});

describe("expandScope", () => {
  test("counts a shared descendant of a diamond once", () => {
    const scope = expandScope(["A"], DIAMOND);
    expect(scope).toHaveLength(4);
    expect([...scope].sort()).toEqual(["A", "B", "C", "D"]);
  });

  test("roots that are each other's descendants, or repeated, appear once", () => {
    const scope = expandScope(["B", "A", "D", "B"], DIAMOND);
    expect([...scope].sort()).toEqual(["A", "B", "C", "D"]);
  });

  test("walks only downwards from the roots", () => {
    expect([...expandScope(["B"], DIAMOND)].sort()).toEqual(["B", "D"]);
    expect(expandScope(["D"], DIAMOND)).toEqual(["D"]);
  });

  test("a root without edges is a scope of itself; no roots is an empty scope", () => {
    expect(expandScope(["Z"], DIAMOND)).toEqual(["Z"]);
    expect(expandScope([], DIAMOND)).toEqual([]);
  });
});

describe("computeCoverageReference + finalizeCoverage", () => {
  test("diamond DAG: the shared descendant is counted once in the scope and in the overall sums", () => {
    // d1 maps to D only; D is reachable through B and through C but is one node of the scope.
    const { nodes, totals } = reference({
      mappings: [{ docId: "d1", nodeId: "D", confidence: 0.9 }],
      chunkCounts: new Map([["d1", 3]]),
    });
    expect(nodes).toHaveLength(4);
    expect(byId(nodes)).toEqual({
      A: stats("A", 0, 10, 0),
      B: stats("B", 0, 10, 0),
      C: stats("C", 0, 10, 0),
      D: stats("D", 1, 10, 3),
    });
    expect(totals).toEqual({ totalDocuments: 1, totalChunks: 3 });
    const report = finalizeCoverage(nodes, totals);
    // covered 1 / wanted 40 (not 50, which counting D twice would give).
    expect(report.overall_coverage).toBe(2.5);
  });

  test("a document mapped to several nodes counts once in the totals and once per node in node counts", () => {
    const { nodes, totals } = reference({
      mappings: [
        { docId: "d1", nodeId: "A", confidence: 0.8 },
        { docId: "d1", nodeId: "B", confidence: 0.9 },
        { docId: "d1", nodeId: "D", confidence: 1 },
        { docId: "d2", nodeId: "D", confidence: 0.75 },
      ],
      chunkCounts: new Map([
        ["d1", 4],
        ["d2", 6],
      ]),
    });
    const report = finalizeCoverage(nodes, totals);
    expect(report.total_documents).toBe(2);
    expect(report.total_chunks).toBe(10);
    expect(report.node_coverage).toEqual({
      A: { document_count: 1, chunk_count: 4, target: 10, coverage_percent: 10 },
      B: { document_count: 1, chunk_count: 4, target: 10, coverage_percent: 10 },
      C: { document_count: 0, chunk_count: 0, target: 10, coverage_percent: 0 },
      D: { document_count: 2, chunk_count: 10, target: 10, coverage_percent: 20 },
    });
    // covered 1 + 1 + 0 + 2 = 4 of 40.
    expect(report.overall_coverage).toBe(10);
  });

  test("confidence just below the threshold (0.6999) is excluded, exactly at it (0.7) included", () => {
    const { nodes, totals } = reference({
      mappings: [
        { docId: "below", nodeId: "A", confidence: 0.6999 },
        { docId: "at", nodeId: "B", confidence: 0.7 },
        { docId: "barely-below", nodeId: "C", confidence: 0.7 - 1e-12 },
        { docId: "above", nodeId: "D", confidence: 0.7000001 },
      ],
      chunkCounts: new Map([
        ["below", 1],
        ["at", 2],
        ["barely-below", 4],
        ["above", 8],
      ]),
    });
    const n = byId(nodes);
    expect(n.A!.documentCount).toBe(0);
    expect(n.B!.documentCount).toBe(1);
    expect(n.C!.documentCount).toBe(0);
    expect(n.D!.documentCount).toBe(1);
    expect(totals).toEqual({ totalDocuments: 2, totalChunks: 10 });
  });

  test("the threshold is configurable: 0 counts every mapping, 1 only certain ones", () => {
    const mappings = [
      { docId: "zero", nodeId: "A", confidence: 0 },
      { docId: "half", nodeId: "A", confidence: 0.5 },
      { docId: "one", nodeId: "A", confidence: 1 },
    ];
    expect(byId(reference({ mappings, confidenceThreshold: 0 }).nodes).A!.documentCount).toBe(3);
    expect(byId(reference({ mappings, confidenceThreshold: 1 }).nodes).A!.documentCount).toBe(1);
  });

  test("mappings to nodes outside the scope do not count", () => {
    const { nodes, totals } = reference({
      roots: ["B"],
      mappings: [
        { docId: "d1", nodeId: "A", confidence: 1 },
        { docId: "d2", nodeId: "C", confidence: 1 },
        { docId: "d3", nodeId: "D", confidence: 1 },
        { docId: "d4", nodeId: "elsewhere", confidence: 1 },
      ],
      chunkCounts: new Map([
        ["d1", 1],
        ["d2", 1],
        ["d3", 5],
        ["d4", 1],
      ]),
    });
    expect(nodes.map((n) => n.nodeId).sort()).toEqual(["B", "D"]);
    expect(totals).toEqual({ totalDocuments: 1, totalChunks: 5 });
  });

  test("custom per-node targets replace the default, and a target smaller than the documents is capped", () => {
    // B: 3 docs, target 2 -> capped at 2 (100%). C: 1 doc, target 4 -> 25%. A, D: default 10.
    const { nodes, totals } = reference({
      mappings: [
        { docId: "d1", nodeId: "B", confidence: 0.9 },
        { docId: "d2", nodeId: "B", confidence: 0.9 },
        { docId: "d3", nodeId: "B", confidence: 0.9 },
        { docId: "d1", nodeId: "C", confidence: 0.9 },
      ],
      chunkCounts: new Map([
        ["d1", 1],
        ["d2", 1],
        ["d3", 1],
      ]),
      targets: new Map([
        ["B", 2],
        ["C", 4],
        ["not-in-scope", 1],
      ]),
    });
    const report = finalizeCoverage(nodes, totals);
    expect(report.node_coverage.B).toEqual({ document_count: 3, chunk_count: 3, target: 2, coverage_percent: 100 });
    expect(report.node_coverage.C).toEqual({ document_count: 1, chunk_count: 1, target: 4, coverage_percent: 25 });
    expect(report.node_coverage.A!.target).toBe(10);
    expect(report.node_coverage.D!.target).toBe(10);
    expect(report.node_coverage["not-in-scope"]).toBeUndefined();
    // covered min(0,10) + min(3,2) + min(1,4) + min(0,10) = 3; wanted 10 + 2 + 4 + 10 = 26; 300/26 = 11.538...
    expect(report.overall_coverage).toBe(11.54);
  });

  test("the capped target limits the overall sum too: surplus documents on one node do not fill another", () => {
    const report = finalizeCoverage([stats("x", 50, 10), stats("y", 0, 10)], { totalDocuments: 50, totalChunks: 0 });
    expect(report.overall_coverage).toBe(50);
  });

  test("the whole diamond case: every figure hand-computed", () => {
    // d3 at 0.6999 is excluded; d4 at exactly 0.7 counts; d2 is on B and C; B has target 1.
    const { nodes, totals } = reference({
      mappings: [
        { docId: "d1", nodeId: "D", confidence: 0.9 },
        { docId: "d2", nodeId: "B", confidence: 0.8 },
        { docId: "d2", nodeId: "C", confidence: 0.75 },
        { docId: "d3", nodeId: "A", confidence: 0.6999 },
        { docId: "d4", nodeId: "A", confidence: 0.7 },
      ],
      chunkCounts: new Map([
        ["d1", 3],
        ["d2", 5],
        ["d3", 7],
        ["d4", 2],
      ]),
      targets: new Map([["B", 1]]),
    });
    expect(finalizeCoverage(nodes, totals)).toEqual({
      // covered 1 + 1 + 1 + 1 = 4; wanted 10 + 1 + 10 + 10 = 31; 400/31 = 12.9032...
      overall_coverage: 12.9,
      total_documents: 3,
      total_chunks: 10,
      node_coverage: {
        A: { document_count: 1, chunk_count: 2, target: 10, coverage_percent: 10 },
        B: { document_count: 1, chunk_count: 5, target: 1, coverage_percent: 100 },
        C: { document_count: 1, chunk_count: 5, target: 10, coverage_percent: 10 },
        D: { document_count: 1, chunk_count: 3, target: 10, coverage_percent: 10 },
      },
    });
  });

  test("an empty scope gives 0 overall coverage and no nodes", () => {
    const { nodes, totals } = reference({ roots: [], mappings: [{ docId: "d1", nodeId: "A", confidence: 1 }] });
    expect(nodes).toEqual([]);
    expect(totals).toEqual({ totalDocuments: 0, totalChunks: 0 });
    expect(finalizeCoverage(nodes, totals)).toEqual({
      overall_coverage: 0,
      total_documents: 0,
      total_chunks: 0,
      node_coverage: {},
    });
  });

  test("overall coverage is rounded to 2 decimals: 1 of 3 -> 33.33, 2 of 3 -> 66.67, 1 of 6 -> 16.67", () => {
    expect(finalizeCoverage([stats("a", 1, 3)], { totalDocuments: 1, totalChunks: 0 }).overall_coverage).toBe(33.33);
    expect(finalizeCoverage([stats("a", 2, 3)], { totalDocuments: 2, totalChunks: 0 }).overall_coverage).toBe(66.67);
    expect(finalizeCoverage([stats("a", 1, 3), stats("b", 0, 3)], { totalDocuments: 1, totalChunks: 0 }).overall_coverage).toBe(16.67);
  });

  test("overall coverage rounds an exact tie half up: 400 nodes of target 10 with 87 covered is 2.175% -> 2.18", () => {
    const nodes = Array.from({ length: 400 }, (_, i) => stats(`n${i}`, i < 87 ? 1 : 0, 10));
    expect(finalizeCoverage(nodes, { totalDocuments: 87, totalChunks: 0 }).overall_coverage).toBe(2.18);
    expect(nodeCoveragePercent(87, 4000)).toBe(2.18);
  });

  test("overall coverage is the ratio of sums, not the mean of node percentages", () => {
    // Node percentages 100 and 10 average to 55; the formula gives (1 + 1) / (1 + 10) = 18.18%.
    const report = finalizeCoverage([stats("a", 1, 1), stats("b", 1, 10)], { totalDocuments: 2, totalChunks: 0 });
    expect(report.overall_coverage).toBe(18.18);
  });

  test("a full scope is exactly 100", () => {
    const report = finalizeCoverage([stats("a", 10, 10), stats("b", 3, 3), stats("c", 9, 1)], { totalDocuments: 9, totalChunks: 0 });
    expect(report.overall_coverage).toBe(100);
  });
});

describe("findGaps", () => {
  test("threshold comparison tolerates floating point: 0.28 * 25 is 7.000000000000001 but needs 7 docs, not 8", () => {
    expect(0.28 * 25).toBeGreaterThan(7); // the trap this test is about
    const gaps = findGaps([stats("none", 0, 25), stats("six", 6, 25), stats("seven", 7, 25)], 0.28);
    expect(gaps.map((g) => [g.node_id, g.missing_docs])).toEqual([
      ["none", 7],
      ["six", 1],
    ]);
  });

  test("0.7 of a target of 10 needs 7 documents: 6 is a gap of 1, 7 is no gap", () => {
    const gaps = findGaps([stats("zero", 0, 10), stats("six", 6, 10), stats("seven", 7, 10)], 0.7);
    expect(gaps).toEqual([
      {
        node_id: "zero",
        current_coverage: 0,
        target_coverage: 70,
        missing_docs: 7,
        recommendation: "Add 7 documents mapped to node zero with confidence at or above the threshold.",
      },
      {
        node_id: "six",
        current_coverage: 60,
        target_coverage: 70,
        missing_docs: 1,
        recommendation: "Add 1 document mapped to node six with confidence at or above the threshold.",
      },
    ]);
  });

  test("missing_docs = ceil(t * target) - docs", () => {
    // ceil(0.5 * 3) = 2; ceil(0.55 * 100) = 55 (0.55 * 100 is 55.00000000000001); ceil(0.25 * 7) = 2; ceil(0.9 * 11) = 10.
    expect(findGaps([stats("a", 0, 3)], 0.5)[0]!.missing_docs).toBe(2);
    expect(findGaps([stats("a", 1, 3)], 0.5)[0]!.missing_docs).toBe(1);
    expect(findGaps([stats("a", 54, 100)], 0.55)[0]!.missing_docs).toBe(1);
    expect(findGaps([stats("a", 55, 100)], 0.55)).toEqual([]);
    expect(findGaps([stats("a", 1, 7)], 0.25)[0]!.missing_docs).toBe(1);
    expect(findGaps([stats("a", 0, 11)], 0.9)[0]!.missing_docs).toBe(10);
  });

  test("current and target coverage are percentages rounded to 2 decimals", () => {
    // ceil(0.6667 * 3) = ceil(2.0001) = 3 documents needed, 1 present.
    const [gap] = findGaps([stats("a", 1, 3)], 0.6667);
    expect(gap).toMatchObject({ current_coverage: 33.33, target_coverage: 66.67, missing_docs: 2 });
  });

  test("sorted by missing_docs descending, then node_id ascending", () => {
    const gaps = findGaps(
      [stats("c", 4, 10), stats("b", 0, 10), stats("a", 4, 10), stats("e", 2, 4), stats("d", 0, 10), stats("f", 3, 20)],
      0.5,
    );
    // missing: a 1, b 5, c 1, d 5, e 0 (at threshold: no gap), f 7.
    expect(gaps.map((g) => [g.node_id, g.missing_docs])).toEqual([
      ["f", 7],
      ["b", 5],
      ["d", 5],
      ["a", 1],
      ["c", 1],
    ]);
  });

  test("node_id ties are ordered by code unit, not locale (upper case before lower case)", () => {
    const gaps = findGaps([stats("b", 0, 2), stats("B", 0, 2), stats("a", 0, 2)], 0.5);
    expect(gaps.map((g) => g.node_id)).toEqual(["B", "a", "b"]);
  });

  test("nodes exactly at the threshold are not gaps", () => {
    expect(findGaps([stats("a", 5, 10)], 0.5)).toEqual([]);
    expect(findGaps([stats("a", 1, 3)], 1 / 3)).toEqual([]);
    expect(findGaps([stats("a", 7, 10)], 0.7)).toEqual([]);
    expect(findGaps([stats("a", 3, 10)], 0.3)).toEqual([]);
  });

  test("nodes above the threshold and over-full nodes are not gaps", () => {
    expect(findGaps([stats("a", 6, 10), stats("b", 40, 10)], 0.5)).toEqual([]);
  });

  test("threshold 0 gives no gaps, even for empty nodes", () => {
    expect(findGaps([stats("a", 0, 10), stats("b", 0, 1), stats("c", 5, 10)], 0)).toEqual([]);
  });

  test("threshold 1 gives every node that is not full, missing target - docs", () => {
    const gaps = findGaps([stats("full", 10, 10), stats("over", 12, 10), stats("nine", 9, 10), stats("empty", 0, 3)], 1);
    expect(gaps.map((g) => [g.node_id, g.missing_docs, g.current_coverage, g.target_coverage])).toEqual([
      ["empty", 3, 0, 100],
      ["nine", 1, 90, 100],
    ]);
  });

  test("no nodes, no gaps", () => {
    expect(findGaps([], 0.5)).toEqual([]);
  });

  test("gaps of the hand-computed diamond at the default threshold 0.5", () => {
    const { nodes } = reference({
      mappings: [
        { docId: "d1", nodeId: "D", confidence: 0.9 },
        { docId: "d2", nodeId: "D", confidence: 0.9 },
        { docId: "d3", nodeId: "D", confidence: 0.9 },
        { docId: "d1", nodeId: "B", confidence: 0.9 },
      ],
      targets: new Map([
        ["B", 2],
        ["D", 4],
      ]),
    });
    // A 0/10 -> 5 missing; B 1/2 = 50% -> no gap; C 0/10 -> 5; D 3/4 -> no gap.
    expect(findGaps(nodes, 0.5).map((g) => [g.node_id, g.missing_docs])).toEqual([
      ["A", 5],
      ["C", 5],
    ]);
  });
});
