import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postTaxonomy, uuid } from "../helpers/fixtures.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

interface NodeOut {
  node_id: string;
  label: string;
  version: string;
  parent_ids: string[];
  created_at: string;
}

async function nodesOf(version: string): Promise<NodeOut[]> {
  const res = await ctx.request("GET", `taxonomies/${version}/nodes`);
  if (res.status === 404) return [];
  expect(res.status).toBe(200);
  return res.body.nodes as NodeOut[];
}

/** Everything stored for a version, straight from the tables, in a stable order. */
async function storedVersion(version: string) {
  const nodes = await ctx.database.sql`
    select node_id::text, label from taxonomy_nodes where version = ${version} order by node_id`;
  const edges = await ctx.database.sql`
    select parent_id::text, child_id::text from taxonomy_edges where version = ${version} order by parent_id, child_id`;
  return { nodes: [...nodes], edges: [...edges] };
}

const byId = (nodes: NodeOut[]) => new Map(nodes.map((n) => [n.node_id, n]));
const sorted = (ids: string[]) => [...ids].sort();

describe("POST /taxonomies", () => {
  test("creates a version with nodes and edges and reports counts", async () => {
    const root = uuid();
    const a = uuid();
    const b = uuid();
    const res = await ctx.request("POST", "taxonomies", {
      body: {
        version: "create-1.0.0",
        nodes: [
          { node_id: root, label: "Root" },
          { node_id: a, label: "A", parent_ids: [root] },
          { node_id: b, label: "B", parent_ids: [root, a] },
        ],
      },
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ version: "create-1.0.0", nodes_written: 3, edges_written: 3, total_nodes: 3, total_edges: 3 });
  });

  test("extends an existing version: labels are updated and edges added", async () => {
    const version = "extend-1.0.0";
    const root = uuid();
    const a = uuid();
    const c = uuid();
    await postTaxonomy(ctx, version, [
      { node_id: root, label: "Root" },
      { node_id: a, label: "A", parent_ids: [root] },
    ]);

    const res = await ctx.request("POST", "taxonomies", {
      body: {
        version,
        nodes: [
          { node_id: a, label: "A renamed" },
          { node_id: c, label: "C", parent_ids: [a, root] },
        ],
      },
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ version, nodes_written: 2, edges_written: 2, total_nodes: 3, total_edges: 3 });

    const nodes = byId(await nodesOf(version));
    expect(nodes.size).toBe(3);
    expect(nodes.get(a)!.label).toBe("A renamed");
    // Sending a node again without parent_ids keeps its existing edges.
    expect(nodes.get(a)!.parent_ids).toEqual([root]);
    expect(nodes.get(root)!.label).toBe("Root");
    expect(sorted(nodes.get(c)!.parent_ids)).toEqual(sorted([a, root]));
  });

  test("re-sending an existing edge does not duplicate it", async () => {
    const version = "idem-1.0.0";
    const root = uuid();
    const a = uuid();
    await postTaxonomy(ctx, version, [
      { node_id: root, label: "Root" },
      { node_id: a, label: "A", parent_ids: [root] },
    ]);
    const res = await ctx.request("POST", "taxonomies", { body: { version, nodes: [{ node_id: a, label: "A", parent_ids: [root] }] } });
    expect(res.status).toBe(201);
    expect(res.body.total_nodes).toBe(2);
    expect(res.body.total_edges).toBe(1);
  });

  test("the same node id may live in several versions independently", async () => {
    const n = uuid();
    await postTaxonomy(ctx, "multi-1", [{ node_id: n, label: "in one" }]);
    await postTaxonomy(ctx, "multi-2", [{ node_id: n, label: "in two" }]);
    expect((await nodesOf("multi-1")).map((x) => x.label)).toEqual(["in one"]);
    expect((await nodesOf("multi-2")).map((x) => x.label)).toEqual(["in two"]);
  });
});

describe("GET /taxonomies/{version}/nodes", () => {
  test("returns every node of the version with its parent_ids", async () => {
    const version = "list-2.0.0";
    const root = uuid();
    const a = uuid();
    const b = uuid();
    const leaf = uuid();
    await postTaxonomy(ctx, version, [
      { node_id: root, label: "Root" },
      { node_id: a, label: "A", parent_ids: [root] },
      { node_id: b, label: "B", parent_ids: [root] },
      { node_id: leaf, label: "Leaf", parent_ids: [a, b] },
    ]);
    // Another version must not leak in.
    await postTaxonomy(ctx, "list-other", [{ node_id: uuid(), label: "Other" }]);

    const res = await ctx.request("GET", `taxonomies/${version}/nodes`);
    expect(res.status).toBe(200);
    expect(res.body.version).toBe(version);
    expect(res.body.total).toBe(4);
    const nodes = byId(res.body.nodes);
    expect(sorted([...nodes.keys()])).toEqual(sorted([root, a, b, leaf]));
    expect(nodes.get(root)!.parent_ids).toEqual([]);
    expect(nodes.get(a)!.parent_ids).toEqual([root]);
    expect(nodes.get(b)!.parent_ids).toEqual([root]);
    expect(sorted(nodes.get(leaf)!.parent_ids)).toEqual(sorted([a, b]));
    for (const n of res.body.nodes as NodeOut[]) {
      expect(n.version).toBe(version);
      expect(typeof n.label).toBe("string");
      // ISO-8601 with an offset (Z or +hh:mm).
      expect(n.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
    }
  });

  test("an unknown version is 404 not_found", async () => {
    const res = await ctx.request("GET", "taxonomies/no-such-version/nodes");
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
    expect(res.body.error.message.length).toBeGreaterThan(0);
  });
});

describe("cycles are rejected with 422 taxonomy_cycle and nothing is written", () => {
  async function expectCycleRejected(version: string, nodes: { node_id: string; label: string; parent_ids?: string[] }[]) {
    const before = await storedVersion(version);
    const listedBefore = await nodesOf(version);
    const res = await ctx.request("POST", "taxonomies", { body: { version, nodes } });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("taxonomy_cycle");
    expect(res.body.error.message.length).toBeGreaterThan(0);
    expect(await storedVersion(version)).toEqual(before);
    expect(await nodesOf(version)).toEqual(listedBefore);
    return res;
  }

  test("a node that is its own parent", async () => {
    const version = "cycle-self";
    const root = uuid();
    await postTaxonomy(ctx, version, [{ node_id: root, label: "Root" }]);
    const a = uuid();
    await expectCycleRejected(version, [{ node_id: a, label: "A", parent_ids: [root, a] }]);
  });

  test("a direct two-node cycle in one request", async () => {
    const version = "cycle-direct";
    const root = uuid();
    await postTaxonomy(ctx, version, [{ node_id: root, label: "Root" }]);
    const a = uuid();
    const b = uuid();
    await expectCycleRejected(version, [
      { node_id: a, label: "A", parent_ids: [b] },
      { node_id: b, label: "B", parent_ids: [a] },
    ]);
  });

  test("a multi-hop cycle in one request, also relabelling an existing node", async () => {
    const version = "cycle-multihop";
    const root = uuid();
    await postTaxonomy(ctx, version, [{ node_id: root, label: "Root" }]);
    const a = uuid();
    const b = uuid();
    const c = uuid();
    const d = uuid();
    await expectCycleRejected(version, [
      { node_id: root, label: "Root relabelled (must not stick)" },
      { node_id: a, label: "A", parent_ids: [root, d] },
      { node_id: b, label: "B", parent_ids: [a] },
      { node_id: c, label: "C", parent_ids: [b] },
      { node_id: d, label: "D", parent_ids: [c] },
    ]);
    expect((await nodesOf(version)).map((n) => n.label)).toEqual(["Root"]);
  });

  test("a cycle closed by a second request over existing edges", async () => {
    const version = "cycle-two-requests";
    const a = uuid();
    const b = uuid();
    const c = uuid();
    await postTaxonomy(ctx, version, [
      { node_id: a, label: "A" },
      { node_id: b, label: "B", parent_ids: [a] },
      { node_id: c, label: "C", parent_ids: [b] },
    ]);
    const extra = uuid();
    const res = await expectCycleRejected(version, [
      { node_id: extra, label: "new node in the failing request", parent_ids: [c] },
      { node_id: a, label: "A", parent_ids: [c] },
    ]);
    expect(res.body.error.details.cycle).toBeDefined();
    const nodes = byId(await nodesOf(version));
    expect(nodes.has(extra)).toBe(false);
    expect(nodes.get(a)!.parent_ids).toEqual([]);
  });

  test("two concurrent requests each adding half of a cycle: one 201, one 422, no cycle stored", async () => {
    const version = "cycle-concurrent";
    const a = uuid();
    const b = uuid();
    await postTaxonomy(ctx, version, [
      { node_id: a, label: "A" },
      { node_id: b, label: "B" },
    ]);
    const [first, second] = await Promise.all([
      ctx.request("POST", "taxonomies", { body: { version, nodes: [{ node_id: b, label: "B", parent_ids: [a] }] } }),
      ctx.request("POST", "taxonomies", { body: { version, nodes: [{ node_id: a, label: "A", parent_ids: [b] }] } }),
    ]);
    expect([first.status, second.status].sort()).toEqual([201, 422]);
    const rejected = first.status === 422 ? first : second;
    expect(rejected.body.error.code).toBe("taxonomy_cycle");
    expect((await storedVersion(version)).edges).toHaveLength(1);
  });

  test("a cycle in one version does not block the same edges reversed in another version", async () => {
    const a = uuid();
    const b = uuid();
    await postTaxonomy(ctx, "dir-1", [
      { node_id: a, label: "A" },
      { node_id: b, label: "B", parent_ids: [a] },
    ]);
    const res = await ctx.request("POST", "taxonomies", {
      body: {
        version: "dir-2",
        nodes: [
          { node_id: b, label: "B" },
          { node_id: a, label: "A", parent_ids: [b] },
        ],
      },
    });
    expect(res.status).toBe(201);
  });
});

describe("parents must exist in the same version", () => {
  test("a parent from another version is 400 unknown_taxonomy_node and nothing is written", async () => {
    const foreign = uuid();
    await postTaxonomy(ctx, "parent-v1", [{ node_id: foreign, label: "Foreign" }]);
    const version = "parent-v2";
    const root = uuid();
    await postTaxonomy(ctx, version, [{ node_id: root, label: "Root" }]);
    const before = await storedVersion(version);

    const child = uuid();
    const res = await ctx.request("POST", "taxonomies", {
      body: {
        version,
        nodes: [
          { node_id: root, label: "Root relabelled (must not stick)" },
          { node_id: child, label: "Child", parent_ids: [foreign] },
        ],
      },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("unknown_taxonomy_node");
    expect(res.body.error.message.length).toBeGreaterThan(0);
    expect(res.body.error.details.node_ids).toEqual([foreign]);
    expect(await storedVersion(version)).toEqual(before);
    expect((await nodesOf(version)).map((n) => [n.node_id, n.label])).toEqual([[root, "Root"]]);
  });

  test("a parent that does not exist anywhere is rejected and a new version is not created", async () => {
    const res = await ctx.request("POST", "taxonomies", {
      body: { version: "parent-nowhere", nodes: [{ node_id: uuid(), label: "Orphan", parent_ids: [uuid()] }] },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("unknown_taxonomy_node");
    expect((await ctx.request("GET", "taxonomies/parent-nowhere/nodes")).status).toBe(404);
    expect(await storedVersion("parent-nowhere")).toEqual({ nodes: [], edges: [] });
  });
});
