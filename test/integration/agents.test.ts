import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";

interface AgentOut {
  agent_id: string;
  name: string;
  taxonomy_node_ids: string[];
  taxonomy_version: string;
  scope_description: string | null;
  level: number;
  total_documents: number;
  total_chunks: number;
  coverage_percent: number;
  last_coverage_update: string | null;
  retrieval_config: Record<string, unknown>;
  features_config: Record<string, unknown>;
  total_queries: number;
  coverage_targets: Record<string, number>;
  created_at: string;
  updated_at: string;
}

interface Hit {
  chunk_id: string;
  doc_id: string;
  title: string;
  chunk_index: number;
  text: string;
  score: number;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

let ctx: TestContext;
// Version "ag-1": root -> child, plus an unrelated node `outside`. Version "ag-2" (created later): root and `newOnly`.
const V1 = "ag-1";
const V2 = "ag-2";
const root = uuid();
const child = uuid();
const outside = uuid();
const onlyV1 = uuid();
const newOnly = uuid();

beforeAll(async () => {
  ctx = await createTestContext();
  await postTaxonomy(ctx, V1, [
    { node_id: root, label: "Root" },
    { node_id: child, label: "Child", parent_ids: [root] },
    { node_id: outside, label: "Outside" },
    { node_id: onlyV1, label: "Only in v1" },
  ]);
  await postTaxonomy(ctx, V2, [
    { node_id: root, label: "Root v2" },
    { node_id: newOnly, label: "Only in v2" },
  ]);
});
afterAll(() => ctx.close());

const expectError = (res: { status: number; body: any }, status: number, code: string) => {
  expect(res.status).toBe(status);
  expect(res.body.error.code).toBe(code);
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.error.message.length).toBeGreaterThan(0);
};

async function countRows(table: "agents" | "coverage_targets", agentId?: string): Promise<number> {
  const rows = agentId
    ? await ctx.database.sql<{ n: number }[]>`select count(*)::int as n from ${ctx.database.sql(table)} where agent_id = ${agentId}`
    : await ctx.database.sql<{ n: number }[]>`select count(*)::int as n from ${ctx.database.sql(table)}`;
  return rows[0]!.n;
}

describe("POST /agents/from-taxonomy", () => {
  test("201 with the full agent and the defaults", async () => {
    const res = await ctx.request("POST", "agents/from-taxonomy", {
      body: {
        name: "Physics helper",
        taxonomy_node_ids: [root],
        taxonomy_version: V1,
        scope_description: "physics",
        retrieval_config: { top_k: 5, rerank: true },
        features_config: { citations: { enabled: true } },
      },
    });
    expect(res.status).toBe(201);
    const a = res.body as AgentOut;
    expect(a.agent_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(a).toMatchObject({
      name: "Physics helper",
      taxonomy_node_ids: [root],
      taxonomy_version: V1,
      scope_description: "physics",
      level: 1,
      total_documents: 0,
      total_chunks: 0,
      coverage_percent: 0,
      last_coverage_update: null,
      retrieval_config: { top_k: 5, rerank: true },
      features_config: { citations: { enabled: true } },
      total_queries: 0,
      coverage_targets: {},
    });
    expect(a.created_at).toMatch(ISO);
    expect(a.updated_at).toMatch(ISO);
    expect((await ctx.request("GET", `agents/${a.agent_id}`)).body).toEqual(a);
  });

  test("without taxonomy_version, the newest version holding all the nodes is used", async () => {
    // root is in both versions; ag-2 is newer.
    expect((await postAgent(ctx, { taxonomy_node_ids: [root] }) as unknown as AgentOut).taxonomy_version).toBe(V2);
    // onlyV1 is only in ag-1, so [root, onlyV1] resolves to ag-1.
    expect((await postAgent(ctx, { taxonomy_node_ids: [root, onlyV1] }) as unknown as AgentOut).taxonomy_version).toBe(V1);
    expect((await postAgent(ctx, { taxonomy_node_ids: [newOnly] }) as unknown as AgentOut).taxonomy_version).toBe(V2);
  });

  test("duplicate root ids are stored once", async () => {
    const a = (await postAgent(ctx, { taxonomy_node_ids: [root, root], taxonomy_version: V1 })) as unknown as AgentOut;
    expect(a.taxonomy_node_ids).toEqual([root]);
  });

  test("coverage_targets are stored", async () => {
    const a = (await postAgent(ctx, { taxonomy_node_ids: [root], taxonomy_version: V1, coverage_targets: { [child]: 3, [root]: 7 } })) as unknown as AgentOut;
    expect(a.coverage_targets).toEqual({ [child]: 3, [root]: 7 });
    expect(await countRows("coverage_targets", a.agent_id)).toBe(2);
  });

  test("400 unknown_taxonomy_node if a node is not in the given version; nothing written", async () => {
    const before = await countRows("agents");
    const res = await ctx.request("POST", "agents/from-taxonomy", {
      body: { name: "bad", taxonomy_node_ids: [root, newOnly], taxonomy_version: V1 },
    });
    expectError(res, 400, "unknown_taxonomy_node");
    expect(res.body.error.details.node_ids).toEqual([newOnly]);
    expect(await countRows("agents")).toBe(before);
  });

  test("400 when no single version holds all the nodes", async () => {
    const before = await countRows("agents");
    const res = await ctx.request("POST", "agents/from-taxonomy", { body: { name: "bad", taxonomy_node_ids: [onlyV1, newOnly] } });
    expectError(res, 400, "unknown_taxonomy_node");
    const unknown = await ctx.request("POST", "agents/from-taxonomy", { body: { name: "bad", taxonomy_node_ids: [uuid()] } });
    expectError(unknown, 400, "unknown_taxonomy_node");
    const noVersion = await ctx.request("POST", "agents/from-taxonomy", {
      body: { name: "bad", taxonomy_node_ids: [root], taxonomy_version: "no-such-version" },
    });
    expectError(noVersion, 400, "unknown_taxonomy_node");
    expect(await countRows("agents")).toBe(before);
  });

  test("a coverage target below 1 is 400 and no agent is written", async () => {
    const before = await countRows("agents");
    const res = await ctx.request("POST", "agents/from-taxonomy", {
      body: { name: "targets", taxonomy_node_ids: [root], taxonomy_version: V1, coverage_targets: { [root]: 0 } },
    });
    expectError(res, 400, "validation_error");
    expect(await countRows("agents")).toBe(before);
  });
});

describe("GET /agents and GET /agents/search", () => {
  // A database of its own, so totals are exact.
  let lctx: TestContext;
  const n1 = uuid();
  const n2 = uuid();
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    lctx = await createTestContext();
    await postTaxonomy(lctx, "l-1", [
      { node_id: n1, label: "N1" },
      { node_id: n2, label: "N2" },
    ]);
    // Two documents on n1 (both count), none on n2.
    for (const title of ["d1", "d2"])
      await postDocument(lctx, { title, mappings: [{ node_id: n1, version: "l-1", confidence: 0.9 }] });
    const specs: [string, number, Record<string, number>, string[]][] = [
      // name, level, coverage targets, roots
      ["Alpha Physics", 2, { [n1]: 2 }, [n1]], // 100 %
      ["alpha chemistry", 2, { [n1]: 4 }, [n1]], // 50 %
      ["Beta Biology", 3, {}, [n2]], // 0 %
      ["100% Pure", 1, {}, [n2]],
      ["100 Pure", 1, {}, [n2]],
      ["snake_case", 1, {}, [n2]],
      ["snakeXcase", 1, {}, [n2]],
    ];
    for (const [name, level, targets, roots] of specs) {
      const a = (await postAgent(lctx, { name, level, coverage_targets: targets, taxonomy_node_ids: roots })) as unknown as AgentOut;
      ids[name] = a.agent_id;
      const cov = await lctx.request("GET", `agents/${a.agent_id}/coverage`);
      expect(cov.status).toBe(200);
    }
  });
  afterAll(() => lctx.close());

  const names = (body: { agents: AgentOut[] }) => body.agents.map((a) => a.name).sort();

  test("coverage computed through the API is stored on the agents", async () => {
    const cov = await lctx.request("GET", `agents/${ids["alpha chemistry"]}/coverage`);
    expect(cov.body.overall_coverage).toBe(50);
    expect(cov.body.total_documents).toBe(2);
    const agent = (await lctx.request("GET", `agents/${ids["alpha chemistry"]}`)).body as AgentOut;
    expect(agent.coverage_percent).toBe(50);
    expect(agent.total_documents).toBe(2);
    expect(agent.last_coverage_update).toMatch(ISO);
  });

  test("no filters: every agent, newest first, total and filters_applied", async () => {
    const res = await lctx.request("GET", "agents");
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(7);
    expect(res.body.agents).toHaveLength(7);
    expect(res.body.filters_applied).toEqual({ max_results: 50 });
    const created = (res.body.agents as AgentOut[]).map((a) => Date.parse(a.created_at));
    expect(created).toEqual([...created].sort((x, y) => y - x));
  });

  test("level filter", async () => {
    const res = await lctx.request("GET", "agents?level=2");
    expect(res.status).toBe(200);
    expect(names(res.body)).toEqual(["Alpha Physics", "alpha chemistry"]);
    expect(res.body.total).toBe(2);
    expect(res.body.filters_applied).toEqual({ level: 2, max_results: 50 });
  });

  test("min_coverage filter (inclusive)", async () => {
    const res = await lctx.request("GET", "agents?min_coverage=50");
    expect(names(res.body)).toEqual(["Alpha Physics", "alpha chemistry"]);
    expect(res.body.filters_applied).toEqual({ min_coverage: 50, max_results: 50 });
    const high = await lctx.request("GET", "agents?min_coverage=75.5");
    expect(names(high.body)).toEqual(["Alpha Physics"]);
    expect(high.body.total).toBe(1);
  });

  test("q filter is a case-insensitive substring of the name", async () => {
    const res = await lctx.request("GET", "agents?q=ALPHA");
    expect(names(res.body)).toEqual(["Alpha Physics", "alpha chemistry"]);
    expect(res.body.filters_applied).toEqual({ q: "ALPHA", max_results: 50 });
  });

  test("filters combine", async () => {
    const res = await lctx.request("GET", "agents?q=alpha&level=2&min_coverage=100");
    expect(names(res.body)).toEqual(["Alpha Physics"]);
    expect(res.body.total).toBe(1);
    expect(res.body.filters_applied).toEqual({ q: "alpha", level: 2, min_coverage: 100, max_results: 50 });
    const none = await lctx.request("GET", "agents?level=5");
    expect(none.status).toBe(200);
    expect(none.body).toEqual({ agents: [], total: 0, filters_applied: { level: 5, max_results: 50 } });
  });

  test("max_results limits the page; total counts every match", async () => {
    const res = await lctx.request("GET", "agents?max_results=3");
    expect(res.body.agents).toHaveLength(3);
    expect(res.body.total).toBe(7);
    expect(res.body.filters_applied).toEqual({ max_results: 3 });
    const max = await lctx.request("GET", "agents?max_results=100");
    expect(max.status).toBe(200);
    expect(max.body.agents).toHaveLength(7);
  });

  test("max_results over 100 is 400", async () => {
    expectError(await lctx.request("GET", "agents?max_results=101"), 400, "validation_error");
    expectError(await lctx.request("GET", "agents/search?q=a&max_results=101"), 400, "validation_error");
  });

  test("search: case-insensitive name match, same shape", async () => {
    const res = await lctx.request("GET", "agents/search?q=aLpHa");
    expect(res.status).toBe(200);
    expect(names(res.body)).toEqual(["Alpha Physics", "alpha chemistry"]);
    expect(res.body.total).toBe(2);
    expect(res.body.filters_applied).toEqual({ q: "aLpHa", max_results: 50 });
    const limited = await lctx.request("GET", "agents/search?q=a&max_results=1");
    expect(limited.body.agents).toHaveLength(1);
    expect(limited.body.total).toBeGreaterThan(1);
  });

  test("search: % and _ in q match literally", async () => {
    const pct = await lctx.request("GET", `agents/search?q=${encodeURIComponent("100%")}`);
    expect(pct.status).toBe(200);
    expect(names(pct.body)).toEqual(["100% Pure"]);
    const under = await lctx.request("GET", "agents/search?q=snake_case");
    expect(names(under.body)).toEqual(["snake_case"]);
    const onlyPct = await lctx.request("GET", `agents/search?q=${encodeURIComponent("%")}`);
    expect(names(onlyPct.body)).toEqual(["100% Pure"]);
    const listPct = await lctx.request("GET", `agents?q=${encodeURIComponent("_")}`);
    expect(names(listPct.body)).toEqual(["snake_case"]);
  });

  test("search without q is 400", async () => {
    expectError(await lctx.request("GET", "agents/search"), 400, "validation_error");
    expectError(await lctx.request("GET", "agents/search?q="), 400, "validation_error");
  });
});

describe("GET / PATCH / DELETE /agents/{agent_id}", () => {
  test("GET returns the agent; unknown id is 404 on every agent route", async () => {
    const a = await postAgent(ctx, { name: "getter", taxonomy_node_ids: [root], taxonomy_version: V1 });
    const res = await ctx.request("GET", `agents/${a.agent_id}`);
    expect(res.status).toBe(200);
    expect(res.body.name).toBe("getter");

    const missing = uuid();
    expectError(await ctx.request("GET", `agents/${missing}`), 404, "not_found");
    expectError(await ctx.request("PATCH", `agents/${missing}`, { body: { name: "x" } }), 404, "not_found");
    expectError(await ctx.request("DELETE", `agents/${missing}`), 404, "not_found");
    expectError(await ctx.request("GET", `agents/${missing}/coverage`), 404, "not_found");
    expectError(await ctx.request("GET", `agents/${missing}/gaps`), 404, "not_found");
    expectError(await ctx.request("POST", `agents/${missing}/query`, { body: { query: "x" } }), 404, "not_found");
  });

  test("PATCH changes only the fields sent and moves updated_at", async () => {
    const created = (await postAgent(ctx, {
      name: "patch me",
      taxonomy_node_ids: [root],
      taxonomy_version: V1,
      scope_description: "before",
      level: 2,
      retrieval_config: { a: 1 },
      features_config: { f: true },
      coverage_targets: { [root]: 4 },
    })) as unknown as AgentOut;
    const [dbBefore] = await ctx.database.sql<{ u: string }[]>`select updated_at::text as u from agents where agent_id = ${created.agent_id}`;

    const res = await ctx.request("PATCH", `agents/${created.agent_id}`, { body: { name: "patched", level: 4 } });
    expect(res.status).toBe(200);
    const patched = res.body as AgentOut;
    const { name: _n, level: _l, updated_at: u1, ...restBefore } = created;
    const { name, level, updated_at: u2, ...restAfter } = patched;
    expect(name).toBe("patched");
    expect(level).toBe(4);
    expect(restAfter).toEqual(restBefore);
    expect(Date.parse(u2)).toBeGreaterThanOrEqual(Date.parse(u1));
    const [dbAfter] = await ctx.database.sql<{ moved: boolean }[]>`
      select updated_at > ${dbBefore!.u}::timestamptz as moved from agents where agent_id = ${created.agent_id}`;
    expect(dbAfter!.moved).toBe(true);
    expect((await ctx.request("GET", `agents/${created.agent_id}`)).body).toEqual(patched);

    // Another field alone.
    const second = (await ctx.request("PATCH", `agents/${created.agent_id}`, { body: { scope_description: "after" } })).body as AgentOut;
    expect(second.scope_description).toBe("after");
    expect(second.name).toBe("patched");
    expect(second.retrieval_config).toEqual({ a: 1 });
    expect(second.coverage_targets).toEqual({ [root]: 4 });
  });

  test("PATCH coverage_targets replaces the whole set; scope changes are checked against the version", async () => {
    const a = (await postAgent(ctx, { taxonomy_node_ids: [root], taxonomy_version: V1, coverage_targets: { [root]: 4, [child]: 2 } })) as unknown as AgentOut;
    const res = await ctx.request("PATCH", `agents/${a.agent_id}`, { body: { coverage_targets: { [child]: 9 } } });
    expect(res.status).toBe(200);
    expect(res.body.coverage_targets).toEqual({ [child]: 9 });
    expect(await countRows("coverage_targets", a.agent_id)).toBe(1);

    const roots = await ctx.request("PATCH", `agents/${a.agent_id}`, { body: { taxonomy_node_ids: [child, outside] } });
    expect(roots.status).toBe(200);
    expect([...roots.body.taxonomy_node_ids].sort()).toEqual([child, outside].sort());

    const bad = await ctx.request("PATCH", `agents/${a.agent_id}`, { body: { taxonomy_node_ids: [newOnly], name: "must not stick" } });
    expectError(bad, 400, "unknown_taxonomy_node");
    const badVersion = await ctx.request("PATCH", `agents/${a.agent_id}`, { body: { taxonomy_version: V2 } });
    expectError(badVersion, 400, "unknown_taxonomy_node");
    const after = (await ctx.request("GET", `agents/${a.agent_id}`)).body as AgentOut;
    expect(after.name).toBe(a.name);
    expect(after.taxonomy_version).toBe(V1);
    expect([...after.taxonomy_node_ids].sort()).toEqual([child, outside].sort());
  });

  test("PATCH with an empty body {} is 400 and changes nothing", async () => {
    const a = (await postAgent(ctx, { name: "empty patch", taxonomy_node_ids: [root], taxonomy_version: V1 })) as unknown as AgentOut;
    const res = await ctx.request("PATCH", `agents/${a.agent_id}`, { body: {} });
    expectError(res, 400, "validation_error");
    expect((await ctx.request("GET", `agents/${a.agent_id}`)).body).toEqual(a);
  });

  test("DELETE is 204, cascades to coverage_targets, then 404", async () => {
    const a = (await postAgent(ctx, { taxonomy_node_ids: [root], taxonomy_version: V1, coverage_targets: { [root]: 3, [child]: 5 } })) as unknown as AgentOut;
    expect(await countRows("coverage_targets", a.agent_id)).toBe(2);
    const res = await ctx.request("DELETE", `agents/${a.agent_id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect(await countRows("coverage_targets", a.agent_id)).toBe(0);
    expect(await countRows("agents", a.agent_id)).toBe(0);
    expectError(await ctx.request("GET", `agents/${a.agent_id}`), 404, "not_found");
    expectError(await ctx.request("DELETE", `agents/${a.agent_id}`), 404, "not_found");
  });
});

describe("GET /agents/{agent_id}/coverage and /gaps", () => {
  test("coverage of an agent with no documents is 0; gaps list every scope node", async () => {
    const a = (await postAgent(ctx, { taxonomy_node_ids: [onlyV1], taxonomy_version: V1 })) as unknown as AgentOut;
    const cov = await ctx.request("GET", `agents/${a.agent_id}/coverage`);
    expect(cov.status).toBe(200);
    expect(cov.body).toMatchObject({ agent_id: a.agent_id, overall_coverage: 0, total_documents: 0, total_chunks: 0, version: V1 });
    expect(cov.body.calculated_at).toMatch(ISO);
    const gaps = await ctx.request("GET", `agents/${a.agent_id}/gaps?threshold=0.3`);
    expect(gaps.status).toBe(200);
    expect(gaps.body.threshold).toBe(0.3);
    expect(gaps.body.gaps.map((g: { node_id: string }) => g.node_id)).toEqual([onlyV1]);
    expect(gaps.body.gaps[0].missing_docs).toBe(3);
    const dflt = await ctx.request("GET", `agents/${a.agent_id}/gaps`);
    expect(dflt.body.threshold).toBe(0.5);
  });
});

describe("POST /agents/{agent_id}/query", () => {
  let qctx: TestContext;
  const R = uuid();
  const C = uuid();
  const O = uuid();
  const docs: Record<string, string> = {};
  let agentId: string;

  beforeAll(async () => {
    qctx = await createTestContext();
    await postTaxonomy(qctx, "q-1", [
      { node_id: R, label: "R" },
      { node_id: C, label: "C", parent_ids: [R] },
      { node_id: O, label: "O" },
    ]);
    await postTaxonomy(qctx, "q-2", [{ node_id: R, label: "R again" }]);
    const add = async (key: string, chunks: string[], node: string, confidence: number, version = "q-1") => {
      docs[key] = (await postDocument(qctx, { title: key, chunks, mappings: [{ node_id: node, version, confidence }] })).doc_id;
    };
    await add("child-strong", ["quantum entanglement links quantum particles", "nothing relevant here"], C, 0.9);
    await add("root-plain", ["an introduction to quantum physics"], R, 0.8);
    await add("root-threshold", ["quantum tunnelling at exactly the threshold"], R, 0.7);
    await add("root-weak", ["quantum quantum quantum but weakly mapped"], R, 0.69);
    await add("outside", ["quantum quantum quantum quantum outside the scope"], O, 1);
    await add("other-version", ["quantum quantum quantum in another version"], R, 1, "q-2");
    agentId = (await postAgent(qctx, { name: "searcher", taxonomy_node_ids: [R], taxonomy_version: "q-1" })).agent_id;
  });
  afterAll(() => qctx.close());

  const query = (body: unknown) => qctx.request("POST", `agents/${agentId}/query`, { body });

  test("returns only chunks of in-scope documents at or above the confidence threshold, best first", async () => {
    const res = await query({ query: "quantum" });
    expect(res.status).toBe(200);
    expect(res.body.agent_id).toBe(agentId);
    expect(res.body.query).toBe("quantum");
    const hits = res.body.results as Hit[];
    expect(res.body.total).toBe(hits.length);
    expect(new Set(hits.map((h) => h.doc_id))).toEqual(new Set([docs["child-strong"]!, docs["root-plain"]!, docs["root-threshold"]!]));
    expect(hits).toHaveLength(3); // the non-matching chunk of child-strong is not returned
    for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
    // Two occurrences outrank one.
    expect(hits[0]!.doc_id).toBe(docs["child-strong"]!);
    expect(hits[0]).toMatchObject({ title: "child-strong", chunk_index: 0, text: "quantum entanglement links quantum particles" });
    expect(hits[0]!.score).toBeGreaterThan(hits[1]!.score);
    for (const h of hits) expect(h.score).toBeGreaterThan(0);
  });

  test("top_k is respected", async () => {
    const res = await query({ query: "quantum", top_k: 2 });
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(2);
    expect(res.body.results[0].doc_id).toBe(docs["child-strong"]!);
    const one = await query({ query: "quantum", top_k: 1 });
    expect(one.body.results).toHaveLength(1);
  });

  test("a query matching nothing returns an empty list; stop-word-only queries do not fail", async () => {
    const none = await query({ query: "zebra" });
    expect(none.status).toBe(200);
    expect(none.body).toMatchObject({ results: [], total: 0 });
    const stop = await query({ query: "the and of" });
    expect(stop.status).toBe(200);
    expect(stop.body.results).toEqual([]);
    const syntax = await query({ query: '"unbalanced -quantum OR (' });
    expect(syntax.status).toBe(200);
  });

  test("total_queries on the agent increments with every query", async () => {
    const before = (await qctx.request("GET", `agents/${agentId}`)).body.total_queries as number;
    await query({ query: "quantum" });
    await query({ query: "physics" });
    await query({ query: "nothing matches this" });
    const after = (await qctx.request("GET", `agents/${agentId}`)).body.total_queries as number;
    expect(after).toBe(before + 3);
  });

  test("a query of another agent sees its own scope", async () => {
    const other = (await postAgent(qctx, { name: "outsider", taxonomy_node_ids: [O], taxonomy_version: "q-1" })).agent_id;
    const res = await qctx.request("POST", `agents/${other}/query`, { body: { query: "quantum" } });
    expect(res.body.results.map((h: Hit) => h.doc_id)).toEqual([docs["outside"]!]);
  });
});
