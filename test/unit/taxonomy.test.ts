/** findCycle: the check that keeps every taxonomy version a DAG. */
import { describe, expect, test } from "bun:test";
import { findCycle } from "../../src/core/taxonomy.ts";
import type { Edge } from "../../src/core/coverage.ts";

const edges = (...pairs: [string, string][]): Edge[] => pairs.map(([parentId, childId]) => ({ parentId, childId }));

/** A returned cycle must be a closed walk along real edges. */
function expectValidCycle(cycle: string[] | null, graph: Edge[]) {
  expect(cycle).not.toBeNull();
  const path = cycle!;
  expect(path.length).toBeGreaterThanOrEqual(2);
  expect(path[0]).toBe(path[path.length - 1]!);
  const edgeSet = new Set(graph.map((e) => `${e.parentId}->${e.childId}`));
  for (let i = 0; i + 1 < path.length; i++) expect(edgeSet.has(`${path[i]}->${path[i + 1]}`)).toBe(true);
  // A simple cycle: no node repeats except the closing one.
  expect(new Set(path.slice(0, -1)).size).toBe(path.length - 1);
  return path;
}

describe("findCycle", () => {
  test("no edges: no cycle", () => {
    expect(findCycle([])).toBeNull();
  });

  test("a DAG with shared descendants (diamond) has no cycle", () => {
    expect(findCycle(edges(["A", "B"], ["A", "C"], ["B", "D"], ["C", "D"]))).toBeNull();
  });

  test("a denser DAG with many shared descendants and several roots has no cycle", () => {
    // Every edge goes from a lower to a higher index: acyclic by construction.
    const graph: Edge[] = [];
    for (let i = 0; i < 60; i++) for (let j = i + 1; j < 60; j += 1 + (i % 5)) graph.push({ parentId: `n${i}`, childId: `n${j}` });
    expect(findCycle(graph)).toBeNull();
    expect(findCycle([...graph].reverse())).toBeNull();
  });

  test("a simple 2-cycle is found", () => {
    const graph = edges(["A", "B"], ["B", "A"]);
    const cycle = expectValidCycle(findCycle(graph), graph);
    expect(cycle).toHaveLength(3);
    expect(new Set(cycle)).toEqual(new Set(["A", "B"]));
  });

  test("a self-loop is a cycle of one node", () => {
    const graph = edges(["A", "B"], ["B", "B"]);
    expect(findCycle(graph)).toEqual(["B", "B"]);
  });

  test("a longer cycle returns a closed path whose consecutive pairs are edges", () => {
    // root -> a -> b -> c -> d -> e -> b, plus side branches that are not on the cycle.
    const graph = edges(["root", "a"], ["a", "b"], ["b", "c"], ["c", "d"], ["d", "e"], ["e", "b"], ["a", "x"], ["x", "y"], ["root", "y"]);
    const cycle = expectValidCycle(findCycle(graph), graph);
    expect(new Set(cycle)).toEqual(new Set(["b", "c", "d", "e"]));
    expect(cycle).toHaveLength(5);
  });

  test("finds the cycle whatever the edge order", () => {
    const base = edges(["p", "q"], ["q", "r"], ["r", "s"], ["s", "p"], ["q", "t"], ["t", "u"]);
    for (let shift = 0; shift < base.length; shift++) {
      const graph = [...base.slice(shift), ...base.slice(0, shift)];
      const cycle = expectValidCycle(findCycle(graph), graph);
      expect(new Set(cycle)).toEqual(new Set(["p", "q", "r", "s"]));
    }
  });

  test("a cycle reached through a shared descendant already finished is still found", () => {
    // D is finished via B before C's branch runs into the cycle C -> E -> C.
    const graph = edges(["A", "B"], ["B", "D"], ["A", "C"], ["C", "D"], ["C", "E"], ["E", "C"]);
    const cycle = expectValidCycle(findCycle(graph), graph);
    expect(new Set(cycle)).toEqual(new Set(["C", "E"]));
  });

  test("disconnected components: a cycle in any component is found, all-acyclic components give null", () => {
    const acyclic = edges(["a1", "a2"], ["a2", "a3"], ["b1", "b2"], ["b1", "b3"], ["b2", "b3"], ["c1", "c2"]);
    expect(findCycle(acyclic)).toBeNull();
    const withCycle = [...acyclic, ...edges(["z1", "z2"], ["z2", "z3"], ["z3", "z1"])];
    const cycle = expectValidCycle(findCycle(withCycle), withCycle);
    expect(new Set(cycle)).toEqual(new Set(["z1", "z2", "z3"]));
    // The cyclic component first, the acyclic ones after.
    const reordered = [...withCycle.slice(-3), ...acyclic];
    expectValidCycle(findCycle(reordered), reordered);
  });

  test("a chain of 10,000 nodes does not overflow the stack (no cycle, and with the closing edge a cycle)", () => {
    const n = 10_000;
    const chain: Edge[] = [];
    for (let i = 0; i + 1 < n; i++) chain.push({ parentId: `c${i}`, childId: `c${i + 1}` });
    expect(findCycle(chain)).toBeNull();
    // Edges listed deepest first, so the walk from c0 is the one that goes all the way down.
    expect(findCycle([...chain].reverse())).toBeNull();

    const closed = [...chain, { parentId: `c${n - 1}`, childId: "c0" }];
    const cycle = expectValidCycle(findCycle(closed), closed);
    expect(cycle).toHaveLength(n + 1);
  });

  test("a chain of 100,000 nodes is checked in linear time", () => {
    const n = 100_000;
    const chain: Edge[] = [];
    for (let i = 0; i + 1 < n; i++) chain.push({ parentId: `c${i}`, childId: `c${i + 1}` });
    const started = performance.now();
    expect(findCycle(chain)).toBeNull();
    // Quadratic work (10^10 steps) would take minutes; linear takes milliseconds. The bound is generous.
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
