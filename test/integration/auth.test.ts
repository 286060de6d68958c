import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { createTestContext, TEST_API_KEY, type TestContext, type TestResponse } from "../helpers/app.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { createApiKey, listApiKeys, revokeApiKey } from "../../src/auth/apiKeys.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

const A = "00000000-0000-4000-8000-000000000001";
const TASK = "agent-coverage-0190f5b2-7c4e-7b0a-9d2e-3f4a5b6c7d8e";

/** Every /api/v1 route of domain.md, with a body that would be valid for the body routes. */
const ROUTES: { method: string; path: string; body?: unknown }[] = [
  { method: "POST", path: "taxonomies", body: { version: "auth-1", nodes: [{ node_id: A, label: "x" }] } },
  { method: "GET", path: "taxonomies/auth-1/nodes" },
  { method: "POST", path: "documents", body: { title: "t", chunks: [], mappings: [] } },
  { method: "POST", path: "documents/bulk", body: { documents: [{ title: "t", chunks: [], mappings: [] }] } },
  { method: "DELETE", path: `documents/${A}` },
  { method: "POST", path: "agents/from-taxonomy", body: { name: "n", taxonomy_node_ids: [A] } },
  { method: "GET", path: "agents" },
  { method: "GET", path: "agents?level=1&max_results=5" },
  { method: "GET", path: "agents/search?q=x" },
  { method: "GET", path: `agents/${A}` },
  { method: "PATCH", path: `agents/${A}`, body: { name: "m" } },
  { method: "DELETE", path: `agents/${A}` },
  { method: "GET", path: `agents/${A}/coverage` },
  { method: "GET", path: `agents/${A}/gaps?threshold=0.5` },
  { method: "POST", path: `agents/${A}/query`, body: { query: "x" } },
  { method: "POST", path: `agents/${A}/coverage/refresh?background=true`, body: { priority: "high" } },
  { method: "POST", path: `agents/${A}/coverage/refresh?background=false` },
  { method: "GET", path: `agents/${A}/coverage/status/${TASK}` },
  { method: "GET", path: `tasks/${TASK}` },
  { method: "DELETE", path: `tasks/${TASK}` },
  { method: "GET", path: `agents/${A}/coverage/history?limit=5` },
];

function expectUnauthorized(res: TestResponse, what: string) {
  expect({ what, status: res.status }).toEqual({ what, status: 401 });
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(res.body.error.code).toBe("unauthorized");
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(res.headers.get("content-type")).toContain("application/json");
}

async function tableCounts() {
  const [row] = await ctx.database.sql<Record<string, number>[]>`
    select (select count(*)::int from taxonomy_nodes) as nodes, (select count(*)::int from documents) as documents,
           (select count(*)::int from agents) as agents, (select count(*)::int from background_tasks) as tasks`;
  return row!;
}

describe("without a valid key every /api/v1 route is 401", () => {
  test("no X-API-Key header", async () => {
    const before = await tableCounts();
    for (const r of ROUTES) expectUnauthorized(await ctx.request(r.method, r.path, { body: r.body, anonymous: true }), `${r.method} ${r.path}`);
    expect(await tableCounts()).toEqual(before);
  });

  test("an empty X-API-Key header", async () => {
    for (const r of ROUTES.slice(0, 3))
      expectUnauthorized(await ctx.request(r.method, r.path, { body: r.body, anonymous: true, headers: { "x-api-key": "" } }), r.path);
  });

  test("an unknown key", async () => {
    const before = await tableCounts();
    for (const r of ROUTES)
      expectUnauthorized(
        await ctx.request(r.method, r.path, { body: r.body, anonymous: true, headers: { "x-api-key": "definitely-not-a-key-0123456789" } }),
        `${r.method} ${r.path}`,
      );
    // A near miss of the static key.
    expectUnauthorized(await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": `${TEST_API_KEY}x` } }), "near miss");
    expectUnauthorized(await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": TEST_API_KEY.toUpperCase() } }), "case");
    expectUnauthorized(await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": "k".repeat(10_000) } }), "huge");
    expect(await tableCounts()).toEqual(before);
  });

  test("unauthenticated callers learn nothing else: unknown routes, bad bodies and bad ids are 401 too", async () => {
    expectUnauthorized(await ctx.request("GET", "no-such-route", { anonymous: true }), "unknown route");
    expectUnauthorized(await ctx.request("GET", "", { anonymous: true }), "api root");
    expectUnauthorized(await ctx.request("POST", "taxonomies", { rawBody: "{not json", anonymous: true }), "malformed json");
    expectUnauthorized(await ctx.request("GET", "agents/not-a-uuid", { anonymous: true }), "bad uuid");
    expectUnauthorized(
      await ctx.request("POST", "documents", { rawBody: "x", anonymous: true, headers: { "content-type": "text/plain" } }),
      "wrong content type",
    );
  });
});

describe("the configured static key", () => {
  test("is accepted on every route (answers are never 401 or 5xx)", async () => {
    for (const r of ROUTES) {
      const res = await ctx.request(r.method, r.path, { body: r.body });
      expect({ route: `${r.method} ${r.path}`, unauthorized: res.status === 401, serverError: res.status >= 500 }).toEqual({
        route: `${r.method} ${r.path}`,
        unauthorized: false,
        serverError: false,
      });
    }
  });

  test("drives a real workflow end to end", async () => {
    const root = uuid();
    expect((await ctx.request("POST", "taxonomies", { body: { version: "auth-2", nodes: [{ node_id: root, label: "r" }] } })).status).toBe(201);
    expect((await ctx.request("GET", "taxonomies/auth-2/nodes")).status).toBe(200);
    const doc = await ctx.request("POST", "documents", {
      body: { title: "t", chunks: [{ text: "hello world" }], mappings: [{ node_id: root, version: "auth-2", confidence: 1 }] },
    });
    expect(doc.status).toBe(201);
    const agent = await ctx.request("POST", "agents/from-taxonomy", { body: { name: "auth agent", taxonomy_node_ids: [root] } });
    expect(agent.status).toBe(201);
    const id = agent.body.agent_id as string;
    expect((await ctx.request("GET", `agents/${id}`)).status).toBe(200);
    expect((await ctx.request("GET", `agents/${id}/coverage`)).status).toBe(200);
    expect((await ctx.request("POST", `agents/${id}/query`, { body: { query: "hello" } })).body.total).toBe(1);
    expect((await ctx.request("DELETE", `documents/${doc.body.doc_id}`)).status).toBe(204);
    expect((await ctx.request("DELETE", `agents/${id}`)).status).toBe(204);
  });
});

describe("stored API keys", () => {
  test("a created key works and is stored only as its hash", async () => {
    const created = await createApiKey(ctx.database.db, "integration key");
    expect(created.key).toMatch(/^aq_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    const res = await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": created.key } });
    expect(res.status).toBe(200);
    expect(res.body.agents).toBeArray();

    const rows = await ctx.database.sql<{ row: string; key_hash: string }[]>`
      select to_jsonb(k)::text as row, key_hash from api_keys k where key_id = ${created.keyId}`;
    expect(rows).toHaveLength(1);
    const secret = created.key.split("_").slice(2).join("_");
    expect(rows[0]!.row).not.toContain(created.key);
    expect(rows[0]!.row).not.toContain(secret);
    expect(rows[0]!.key_hash).toBe(createHash("sha256").update(created.key).digest("hex"));
    // Nowhere in the whole table either.
    const [all] = await ctx.database.sql<{ dump: string }[]>`select coalesce(string_agg(to_jsonb(k)::text, ','), '') as dump from api_keys k`;
    expect(all!.dump).not.toContain(secret);
  });

  test("a revoked key stops working; other keys keep working", async () => {
    const doomed = await createApiKey(ctx.database.db, "doomed");
    const survivor = await createApiKey(ctx.database.db, "survivor");
    expect((await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": doomed.key } })).status).toBe(200);
    expect(await revokeApiKey(ctx.database.db, doomed.keyId, ctx.keyRevocations)).toBe(1);
    expectUnauthorized(await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": doomed.key } }), "revoked");
    expect((await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": survivor.key } })).status).toBe(200);
    // Revoking again changes nothing.
    expect(await revokeApiKey(ctx.database.db, doomed.keyId, ctx.keyRevocations)).toBe(0);
  });

  test("a revoked key is refused on writes and nothing is written", async () => {
    const k = await createApiKey(ctx.database.db, "writer");
    await revokeApiKey(ctx.database.db, k.keyId, ctx.keyRevocations);
    const before = await tableCounts();
    const res = await ctx.request("POST", "taxonomies", {
      anonymous: true,
      headers: { "x-api-key": k.key },
      body: { version: "revoked-write", nodes: [{ node_id: uuid(), label: "x" }] },
    });
    expectUnauthorized(res, "revoked write");
    expect(await tableCounts()).toEqual(before);
  });

  test("a key of the right shape with a wrong secret is 401", async () => {
    const real = await createApiKey(ctx.database.db, "real");
    const [prefix, id, secret] = [real.key.slice(0, 3), real.key.slice(3, 35), real.key.slice(36)];
    expect(secret).toHaveLength(43);
    const flipped = secret[0] === "A" ? `B${secret.slice(1)}` : `A${secret.slice(1)}`;
    const wrongSecret = `${prefix}${id}_${flipped}`;
    expect(wrongSecret).toMatch(/^aq_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    expect(wrongSecret).not.toBe(real.key);
    expectUnauthorized(await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": wrongSecret } }), "wrong secret");
    // The right secret under another (unknown) id.
    const otherId = `${prefix}${"0".repeat(32)}_${secret}`;
    expectUnauthorized(await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": otherId } }), "wrong id");
    // The real key still works.
    expect((await ctx.request("GET", "agents", { anonymous: true, headers: { "x-api-key": real.key } })).status).toBe(200);
  });
});

describe("operational routes and docs need no key", () => {
  test("/healthz", async () => {
    const res = await ctx.request("GET", "/healthz", { anonymous: true });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  test("/readyz", async () => {
    const res = await ctx.request("GET", "/readyz", { anonymous: true });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("ready");
  });

  test("/swagger serves the UI", async () => {
    const res = await ctx.request("GET", "/swagger", { anonymous: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.text).toContain("swagger");
  });

  test("/swagger/json serves the OpenAPI document", async () => {
    const res = await ctx.request("GET", "/swagger/json", { anonymous: true });
    expect(res.status).toBe(200);
    expect(res.body.openapi).toMatch(/^3\./);
    // Sending a wrong key to an open route does not break it.
    expect((await ctx.request("GET", "/swagger/json", { anonymous: true, headers: { "x-api-key": "nope" } })).status).toBe(200);
  });
});

describe("the OpenAPI document", () => {
  type Op = {
    requestBody?: { content?: Record<string, { schema?: { type?: string; properties?: Record<string, unknown> } }> };
    responses?: Record<string, { content?: Record<string, { schema?: Record<string, unknown> }> }>;
    parameters?: { name: string; in: string }[];
  };
  let spec: { paths: Record<string, Record<string, Op>>; components?: { securitySchemes?: Record<string, unknown> }; security?: unknown };

  beforeAll(async () => {
    spec = (await ctx.request("GET", "/swagger/json", { anonymous: true })).body;
  });

  // [method, path, success status, request body?, extra error statuses]
  const DOCUMENTED: [string, string, string, boolean, string[]][] = [
    ["post", "/api/v1/taxonomies", "201", true, ["413", "422"]],
    ["get", "/api/v1/taxonomies/{version}/nodes", "200", false, ["404"]],
    ["post", "/api/v1/documents", "201", true, ["409", "413"]],
    ["post", "/api/v1/documents/bulk", "201", true, ["409", "413"]],
    ["delete", "/api/v1/documents/{doc_id}", "204", false, ["404"]],
    ["post", "/api/v1/agents/from-taxonomy", "201", true, ["413"]],
    ["get", "/api/v1/agents", "200", false, []],
    ["get", "/api/v1/agents/search", "200", false, []],
    ["get", "/api/v1/agents/{agent_id}", "200", false, ["404"]],
    ["patch", "/api/v1/agents/{agent_id}", "200", true, ["404", "413"]],
    ["delete", "/api/v1/agents/{agent_id}", "204", false, ["404"]],
    ["get", "/api/v1/agents/{agent_id}/coverage", "200", false, ["404"]],
    ["get", "/api/v1/agents/{agent_id}/gaps", "200", false, ["404"]],
    ["post", "/api/v1/agents/{agent_id}/query", "200", true, ["404", "413"]],
    ["post", "/api/v1/agents/{agent_id}/coverage/refresh", "202", true, ["404"]],
    ["get", "/api/v1/agents/{agent_id}/coverage/status/{task_id}", "200", false, ["404"]],
    ["get", "/api/v1/tasks/{task_id}", "200", false, ["404"]],
    ["delete", "/api/v1/tasks/{task_id}", "204", false, ["404"]],
    ["get", "/api/v1/agents/{agent_id}/coverage/history", "200", false, ["404"]],
  ];

  test.each(DOCUMENTED)("%s %s is documented with request, response and error schemas", (method, path, success, hasBody, extraErrors) => {
    const op = spec.paths[path]?.[method];
    expect(op).toBeDefined();
    const responses = op!.responses ?? {};
    expect(responses[success]).toBeDefined();
    if (success !== "204") {
      const schema = responses[success]!.content?.["application/json"]?.schema;
      expect(schema).toBeDefined();
      expect(Object.keys(schema!).length).toBeGreaterThan(0);
    }
    for (const status of ["400", "401", ...extraErrors]) {
      const schema = responses[status]?.content?.["application/json"]?.schema as
        | { properties?: { error?: { properties?: Record<string, unknown>; required?: string[] } } }
        | undefined;
      expect({ status, documented: schema !== undefined }).toEqual({ status, documented: true });
      expect(schema!.properties?.error?.required).toEqual(expect.arrayContaining(["code", "message"]));
    }
    if (hasBody) {
      const body = op!.requestBody?.content?.["application/json"]?.schema;
      expect({ path, requestSchema: body !== undefined }).toEqual({ path, requestSchema: true });
      expect(body!.type).toBe("object");
      expect(Object.keys(body!.properties ?? {}).length).toBeGreaterThan(0);
    }
    for (const param of path.match(/\{([^}]+)\}/g) ?? []) {
      const name = param.slice(1, -1);
      expect(op!.parameters?.some((p) => p.in === "path" && p.name === name)).toBe(true);
    }
  });

  test("query parameters of the list, search and gaps routes are documented", () => {
    const names = (path: string) => (spec.paths[path]?.get?.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name);
    expect(names("/api/v1/agents")).toEqual(expect.arrayContaining(["level", "min_coverage", "q", "max_results"]));
    expect(names("/api/v1/agents/search")).toEqual(expect.arrayContaining(["q", "max_results"]));
    expect(names("/api/v1/agents/{agent_id}/gaps")).toEqual(["threshold"]);
  });

  test("request bodies document their fields", () => {
    const fields = (path: string, method: string) =>
      Object.keys(spec.paths[path]?.[method]?.requestBody?.content?.["application/json"]?.schema?.properties ?? {});
    expect(fields("/api/v1/taxonomies", "post")).toEqual(expect.arrayContaining(["version", "nodes"]));
    expect(fields("/api/v1/documents", "post")).toEqual(expect.arrayContaining(["doc_id", "title", "source_url", "chunks", "mappings"]));
    expect(fields("/api/v1/documents/bulk", "post")).toEqual(["documents"]);
    expect(fields("/api/v1/agents/from-taxonomy", "post")).toEqual(
      expect.arrayContaining(["name", "taxonomy_node_ids", "taxonomy_version", "scope_description", "retrieval_config", "features_config"]),
    );
    expect(fields("/api/v1/agents/{agent_id}/query", "post")).toEqual(expect.arrayContaining(["query", "top_k"]));
  });

  test("declares the X-API-Key security scheme", () => {
    expect(spec.components?.securitySchemes?.apiKey).toEqual({ type: "apiKey", in: "header", name: "X-API-Key" });
  });
});

test("an existing agent is not revealed to an anonymous caller", async () => {
  const root = uuid();
  await postTaxonomy(ctx, "auth-3", [{ node_id: root, label: "r" }]);
  const { agent_id } = await postAgent(ctx, { taxonomy_node_ids: [root] });
  const res = await ctx.request("GET", `agents/${agent_id}`, { anonymous: true });
  expectUnauthorized(res, "existing agent");
  expect(res.text).not.toContain(agent_id);
  expect(res.text).not.toContain("auth-3");
});

describe("listing keys", () => {
  test("lists every key with its revocation time and never the key or its hash", async () => {
    const kept = await createApiKey(ctx.database.db, "listed-kept");
    const gone = await createApiKey(ctx.database.db, "listed-gone");
    await revokeApiKey(ctx.database.db, "listed-gone", ctx.keyRevocations);
    const listed = await listApiKeys(ctx.database.db);
    const byId = new Map(listed.map((k) => [k.keyId, k]));
    expect(byId.get(kept.keyId)?.revokedAt).toBeNull();
    expect(byId.get(gone.keyId)?.revokedAt).toBeInstanceOf(Date);
    expect(JSON.stringify(listed)).not.toContain(kept.key);
    expect(Object.keys(listed[0]!).sort()).toEqual(["createdAt", "keyId", "name", "revokedAt"]);
  });
});
