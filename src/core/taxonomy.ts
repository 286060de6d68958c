/** Pure graph checks on a taxonomy version's edges. */
import type { Edge } from "./coverage.ts";

/**
 * Returns one cycle as a node path (first node repeated at the end), or null
 * when the edges form a DAG. Iterative DFS with colours: O(nodes + edges).
 */
export function findCycle(edges: readonly Edge[]): string[] | null {
  const children = new Map<string, string[]>();
  for (const e of edges) {
    const list = children.get(e.parentId);
    if (list) list.push(e.childId);
    else children.set(e.parentId, [e.childId]);
  }
  const state = new Map<string, 1 | 2>(); // 1 = on the current path, 2 = finished
  for (const start of children.keys()) {
    if (state.has(start)) continue;
    const path: string[] = [];
    const stack: { node: string; next: number }[] = [{ node: start, next: 0 }];
    state.set(start, 1);
    path.push(start);
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      const kids = children.get(frame.node) ?? [];
      if (frame.next < kids.length) {
        const child = kids[frame.next++]!;
        const s = state.get(child);
        if (s === 1) return [...path.slice(path.indexOf(child)), child];
        if (s === undefined) {
          state.set(child, 1);
          path.push(child);
          stack.push({ node: child, next: 0 });
        }
      } else {
        state.set(frame.node, 2);
        path.pop();
        stack.pop();
      }
    }
  }
  return null;
}
