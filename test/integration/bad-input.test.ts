/**
 * One test per class of bad input: each asserts a 4xx, the single error shape
 * `{error: {code, message, details?}}`, the specific code, and that nothing was
 * (half-)written.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestContext, TEST_API_KEY, type TestContext, type TestResponse } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { sql as drizzleSql } from "drizzle-orm";
import { errorForLog, toErrorResponse } from "../../src/api/errors.ts";
import { sqlState } from "../../src/db/errors.ts";

const MAX_BODY = 2048;

let ctx: TestContext;
const V1 = "bad-1";
const V2 = "bad-2";
const root = uuid();
const child = uuid();
const otherVersionNode = uuid();
let agentId: string;
let docId: string;

beforeAll(async () => {
  ctx = await createTestContext({ maxBodyBytes: MAX_BODY });
  await postTaxonomy(ctx, V1, [
    { node_id: root, label: "Root" },
    { node_id: child, label: "Child", parent_ids: [root] },
  ]);
  await postTaxonomy(ctx, V2, [{ node_id: otherVersionNode, label: "Elsewhere" }]);
  docId = (await postDocument(ctx, { title: "seed", chunks: ["seed text"], mappings: [{ node_id: child, version: V1, confidence: 0.9 }] })).doc_id;
  agentId = (await postAgent(ctx, { name: "seed agent", taxonomy_node_ids: [root], taxonomy_version: V1, coverage_targets: { [root]: 2 } })).agent_id;
});
afterAll(() => ctx.close());

const TABLES = [
  "taxonomy_nodes",
  "taxonomy_edges",
  "documents",
  "chunks",
  "doc_taxonomy",
  "agents",
  "coverage_targets",
  "background_tasks",
  "coverage_history",
] as const;

/** A digest of every row of every table the API writes: any change at all shows. */
async function snapshot(on: TestContext = ctx): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of TABLES) {
    const [row] = await on.database.sql<{ digest: string }[]>`
      select count(*)::text || ':' || md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as digest
      from ${ctx.database.sql(table)} t`;
    out[table] = row!.digest;
  }
  return out;
}

async function queuedKeys(on: TestContext = ctx): Promise<string[]> {
  return (await on.redis.keys(`${on.config.redisPrefix}:*`)).sort();
}

/** The one error shape, with the given status and code. */
function expectError(res: TestResponse, status: number, code: string, what = "") {
  expect({ what, status: res.status, code: res.body?.error?.code }).toEqual({ what, status, code });
  expect(res.headers.get("content-type")).toContain("application/json");
  expect(Object.keys(res.body)).toEqual(["error"]);
  const keys = Object.keys(res.body.error);
  expect(keys).toEqual(expect.arrayContaining(["code", "message"]));
  for (const k of keys) expect(["code", "message", "details"]).toContain(k);
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.error.message.trim().length).toBeGreaterThan(0);
}

/** Runs `send`, expects every response to be the given error, and proves nothing changed. */
async function expectRejectedWithoutWrites(status: number, code: string, send: () => Promise<[string, TestResponse][]>, on: TestContext = ctx) {
  const before = await snapshot(on);
  const keysBefore = await queuedKeys(on);
  const results = await send();
  expect(results.length).toBeGreaterThan(0);
  for (const [what, res] of results) expectError(res, status, code, what);
  expect(await snapshot(on)).toEqual(before);
  expect(await queuedKeys(on)).toEqual(keysBefore);
}

const validDoc = (over: Record<string, unknown> = {}) => ({
  title: "a document",
  chunks: [{ text: "text" }],
  mappings: [{ node_id: root, version: V1, confidence: 0.8 }],
  ...over,
});

test("malformed JSON is 400 malformed_json", async () => {
  const bodies = ["{bad", '{"version": "x",}', "{'version': 'x'}", '{"nodes": [', "NaN", "undefined", '{"a":1}}', "\u0000"];
  await expectRejectedWithoutWrites(400, "malformed_json", async () => {
    const out: [string, TestResponse][] = [];
    for (const raw of bodies) {
      out.push([`taxonomies ${raw}`, await ctx.request("POST", "taxonomies", { rawBody: raw })]);
      out.push([`documents ${raw}`, await ctx.request("POST", "documents", { rawBody: raw })]);
      out.push([`bulk ${raw}`, await ctx.request("POST", "documents/bulk", { rawBody: raw })]);
      out.push([`agent ${raw}`, await ctx.request("POST", "agents/from-taxonomy", { rawBody: raw })]);
      out.push([`patch ${raw}`, await ctx.request("PATCH", `agents/${agentId}`, { rawBody: raw })]);
      out.push([`query ${raw}`, await ctx.request("POST", `agents/${agentId}/query`, { rawBody: raw })]);
      out.push([`refresh ${raw}`, await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { rawBody: raw })]);
    }
    return out;
  });
});

test("wrong types are 400 validation_error naming the field", async () => {
  const cases: [string, string, string, unknown, string][] = [
    ["POST", "taxonomies", "version number", { version: 1, nodes: [{ node_id: uuid(), label: "x" }] }, "/version"],
    ["POST", "taxonomies", "nodes string", { version: "w", nodes: "x" }, "/nodes"],
    ["POST", "taxonomies", "label object", { version: "w", nodes: [{ node_id: uuid(), label: { a: 1 } }] }, "/nodes/0/label"],
    ["POST", "taxonomies", "parent_ids string", { version: V1, nodes: [{ node_id: uuid(), label: "x", parent_ids: root }] }, "/nodes/0/parent_ids"],
    ["POST", "documents", "title number", validDoc({ title: 5 }), "/title"],
    ["POST", "documents", "chunks object", validDoc({ chunks: { text: "x" } }), "/chunks"],
    ["POST", "documents", "confidence boolean", validDoc({ mappings: [{ node_id: root, version: V1, confidence: true }] }), "/mappings/0/confidence"],
    ["POST", "documents", "confidence string", validDoc({ mappings: [{ node_id: root, version: V1, confidence: "0.9" }] }), "/mappings/0/confidence"],
    ["POST", "documents", "confidence above 1", validDoc({ mappings: [{ node_id: root, version: V1, confidence: 1.5 }] }), "/mappings/0/confidence"],
    ["POST", "documents", "token_count negative", validDoc({ chunks: [{ text: "x", token_count: -1 }] }), "/chunks/0/token_count"],
    ["POST", "documents/bulk", "documents object", { documents: validDoc() }, "/documents"],
    ["POST", "agents/from-taxonomy", "node ids string", { name: "x", taxonomy_node_ids: root }, "/taxonomy_node_ids"],
    ["POST", "agents/from-taxonomy", "level text", { name: "x", taxonomy_node_ids: [root], level: "high" }, "/level"],
    ["POST", "agents/from-taxonomy", "level 6", { name: "x", taxonomy_node_ids: [root], level: 6 }, "/level"],
    ["POST", "agents/from-taxonomy", "config array", { name: "x", taxonomy_node_ids: [root], retrieval_config: [1, 2] }, "/retrieval_config"],
    ["POST", "agents/from-taxonomy", "empty name", { name: "", taxonomy_node_ids: [root] }, "/name"],
    ["PATCH", `agents/${agentId}`, "name null", { name: null }, "/name"],
    ["PATCH", `agents/${agentId}`, "level float", { level: 2.5 }, "/level"],
    ["POST", `agents/${agentId}/query`, "query number", { query: 42 }, "/query"],
    ["POST", `agents/${agentId}/query`, "top_k float", { query: "x", top_k: 1.5 }, "/top_k"],
    ["POST", `agents/${agentId}/coverage/refresh`, "priority unknown", { priority: "urgent" }, "/priority"],
  ];
  await expectRejectedWithoutWrites(400, "validation_error", async () => {
    const out: [string, TestResponse][] = [];
    for (const [method, path, what, body, field] of cases) {
      const res = await ctx.request(method, path, { body });
      out.push([what, res]);
      const paths = (res.body?.error?.details?.issues ?? []).map((i: { path: string }) => i.path);
      expect({ what, mentions: paths.some((p: string) => p.startsWith(field)) }).toEqual({ what, mentions: true });
    }
    return out;
  });
});

test("a value outside a fixed choice is refused with the allowed values named", async () => {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority: "urgent" } });
  expect(res.status).toBe(400);
  expect(res.body.error.message).toBe('invalid body: /priority must be one of "high", "medium", "low"');
  expect(res.body.error.details.issues[0]).toEqual({ path: "/priority", message: 'must be one of "high", "medium", "low"' });
});

test("invalid UUIDs in paths and bodies are 400 validation_error", async () => {
  const bad = ["not-a-uuid", "123", "00000000-0000-4000-8000-00000000000", "g0000000-0000-4000-8000-000000000000", `${uuid()}x`];
  await expectRejectedWithoutWrites(400, "validation_error", async () => {
    const out: [string, TestResponse][] = [];
    for (const id of bad) {
      const p = encodeURIComponent(id);
      out.push([`GET agent ${id}`, await ctx.request("GET", `agents/${p}`)]);
      out.push([`PATCH agent ${id}`, await ctx.request("PATCH", `agents/${p}`, { body: { name: "x" } })]);
      out.push([`DELETE agent ${id}`, await ctx.request("DELETE", `agents/${p}`)]);
      out.push([`coverage ${id}`, await ctx.request("GET", `agents/${p}/coverage`)]);
      out.push([`gaps ${id}`, await ctx.request("GET", `agents/${p}/gaps`)]);
      out.push([`query ${id}`, await ctx.request("POST", `agents/${p}/query`, { body: { query: "x" } })]);
      out.push([`refresh ${id}`, await ctx.request("POST", `agents/${p}/coverage/refresh`)]);
      out.push([`history ${id}`, await ctx.request("GET", `agents/${p}/coverage/history`)]);
      out.push([`DELETE document ${id}`, await ctx.request("DELETE", `documents/${p}`)]);
      out.push([`node_id ${id}`, await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: id, label: "x" }] } })]);
      out.push([`parent_id ${id}`, await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: uuid(), label: "x", parent_ids: [id] }] } })]);
      out.push([`doc_id ${id}`, await ctx.request("POST", "documents", { body: validDoc({ doc_id: id }) })]);
      out.push([`mapping ${id}`, await ctx.request("POST", "documents", { body: validDoc({ mappings: [{ node_id: id, version: V1, confidence: 1 }] }) })]);
      out.push([`bulk doc_id ${id}`, await ctx.request("POST", "documents/bulk", { body: { documents: [validDoc(), validDoc({ doc_id: id })] } })]);
      out.push([`agent nodes ${id}`, await ctx.request("POST", "agents/from-taxonomy", { body: { name: "x", taxonomy_node_ids: [root, id] } })]);
      out.push([`targets ${id}`, await ctx.request("POST", "agents/from-taxonomy", { body: { name: "x", taxonomy_node_ids: [root], coverage_targets: { [id]: 3 } } })]);
      out.push([`patch nodes ${id}`, await ctx.request("PATCH", `agents/${agentId}`, { body: { taxonomy_node_ids: [id] } })]);
    }
    return out;
  });
});

test("unknown fields in bodies and query strings are 400 validation_error", async () => {
  await expectRejectedWithoutWrites(400, "validation_error", async () => [
    ["taxonomy top", await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: uuid(), label: "x" }], extra: 1 } })],
    ["taxonomy node", await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: uuid(), label: "x", parents: [root] }] } })],
    ["document top", await ctx.request("POST", "documents", { body: validDoc({ author: "me" }) })],
    ["document chunk", await ctx.request("POST", "documents", { body: validDoc({ chunks: [{ text: "x", page: 1 }] }) })],
    ["document mapping", await ctx.request("POST", "documents", { body: validDoc({ mappings: [{ node_id: root, version: V1, confidence: 1, weight: 2 }] }) })],
    ["bulk top", await ctx.request("POST", "documents/bulk", { body: { documents: [validDoc()], atomic: true } })],
    ["bulk inner", await ctx.request("POST", "documents/bulk", { body: { documents: [validDoc(), validDoc({ tags: [] })] } })],
    ["agent", await ctx.request("POST", "agents/from-taxonomy", { body: { name: "x", taxonomy_node_ids: [root], owner: "me" } })],
    ["patch", await ctx.request("PATCH", `agents/${agentId}`, { body: { name: "renamed", total_queries: 99 } })],
    ["patch only unknown", await ctx.request("PATCH", `agents/${agentId}`, { body: { agent_id: uuid() } })],
    ["query", await ctx.request("POST", `agents/${agentId}/query`, { body: { query: "x", filter: {} } })],
    ["refresh", await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { priority: "low", delay: 5 } })],
    ["list query", await ctx.request("GET", "agents?sort=name")],
    ["search query", await ctx.request("GET", "agents/search?q=a&level=1")],
    ["gaps query", await ctx.request("GET", `agents/${agentId}/gaps?threshold=0.5&limit=3`)],
  ]);
  // The patch with one good and one unknown field changed nothing.
  expect((await ctx.request("GET", `agents/${agentId}`)).body.name).toBe("seed agent");
});

test("a taxonomy cycle is 422 taxonomy_cycle", async () => {
  const fresh = uuid();
  await expectRejectedWithoutWrites(422, "taxonomy_cycle", async () => [
    ["back edge", await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: root, label: "Root!", parent_ids: [child] }] } })],
    ["self", await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: fresh, label: "self", parent_ids: [fresh] }] } })],
    [
      "new loop",
      await ctx.request("POST", "taxonomies", {
        body: {
          version: V1,
          nodes: [
            { node_id: fresh, label: "f", parent_ids: [child] },
            { node_id: root, label: "Root", parent_ids: [fresh] },
          ],
        },
      }),
    ],
  ]);
});

test("a node of another version is 400 unknown_taxonomy_node", async () => {
  await expectRejectedWithoutWrites(400, "unknown_taxonomy_node", async () => [
    ["parent", await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: uuid(), label: "x", parent_ids: [otherVersionNode] }] } })],
    ["mapping", await ctx.request("POST", "documents", { body: validDoc({ mappings: [{ node_id: otherVersionNode, version: V1, confidence: 1 }] }) })],
    ["bulk mapping", await ctx.request("POST", "documents/bulk", { body: { documents: [validDoc(), validDoc({ mappings: [{ node_id: otherVersionNode, version: V1, confidence: 1 }] })] } })],
    ["agent", await ctx.request("POST", "agents/from-taxonomy", { body: { name: "x", taxonomy_node_ids: [otherVersionNode], taxonomy_version: V1 } })],
    ["patch", await ctx.request("PATCH", `agents/${agentId}`, { body: { taxonomy_node_ids: [otherVersionNode] } })],
    ["patch version", await ctx.request("PATCH", `agents/${agentId}`, { body: { taxonomy_version: V2 } })],
  ]);
});

test("a node listed twice in one taxonomy request is 400 naming both places; a parent named twice is one edge", async () => {
  const twice = uuid();
  await expectRejectedWithoutWrites(400, "validation_error", async () => {
    const res = await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: twice, label: "a" }, { node_id: uuid(), label: "b" }, { node_id: twice, label: "c" }] } });
    expect(res.body.error.details.issues).toEqual([{ path: "/nodes/2/node_id", message: "duplicate of /nodes/0/node_id" }]);
    return [["duplicate node", res]];
  });
  const child = uuid();
  const res = await ctx.request("POST", "taxonomies", { body: { version: V1, nodes: [{ node_id: child, label: "c", parent_ids: [root, root] }] } });
  expect(res.status).toBe(201);
  expect(res.body.edges_written).toBe(1);
});

describe("a body over the configured size limit is 413 payload_too_large", () => {
  // Valid in every other way: only the size is wrong.
  const bigDoc = () => JSON.stringify(validDoc({ chunks: [{ text: "t".repeat(MAX_BODY) }] }));

  test("with a content-length header", async () => {
    const body = bigDoc();
    expect(body.length).toBeGreaterThan(MAX_BODY);
    await expectRejectedWithoutWrites(413, "payload_too_large", async () => [
      ["documents", await ctx.request("POST", "documents", { rawBody: body, headers: { "content-length": String(body.length) } })],
      ["bulk", await ctx.request("POST", "documents/bulk", { rawBody: `{"documents":[${body}]}`, headers: { "content-length": String(body.length + 16) } })],
      ["patch", await ctx.request("PATCH", `agents/${agentId}`, { rawBody: body, headers: { "content-length": String(body.length) } })],
      // Declared large, even if the content type is wrong or the route has no body.
      ["declared only", await ctx.request("DELETE", `documents/${docId}`, { rawBody: body, headers: { "content-length": String(body.length) } })],
    ]);
    expect((await ctx.request("POST", "documents", { rawBody: body, headers: { "content-length": String(body.length) } })).body.error.details).toEqual({
      max_bytes: MAX_BODY,
    });
  });

  test("without a content-length header (streamed body)", async () => {
    const send = async (path: string, method: string, text: string) => {
      const bytes = new TextEncoder().encode(text);
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          // Several small pieces, as a chunked upload would arrive.
          for (let i = 0; i < bytes.length; i += 500) controller.enqueue(bytes.slice(i, i + 500));
          controller.close();
        },
      });
      const request = new Request(`http://localhost/api/v1/${path}`, {
        method,
        headers: { "x-api-key": TEST_API_KEY, "content-type": "application/json" },
        body: stream,
        duplex: "half",
      } as RequestInit);
      expect(request.headers.get("content-length")).toBeNull();
      const res = await ctx.app.handle(request);
      const raw = await res.text();
      return { status: res.status, headers: res.headers, text: raw, body: JSON.parse(raw) } as TestResponse;
    };
    await expectRejectedWithoutWrites(413, "payload_too_large", async () => [
      ["documents", await send("documents", "POST", bigDoc())],
      ["taxonomies", await send("taxonomies", "POST", JSON.stringify({ version: V1, nodes: Array.from({ length: 40 }, () => ({ node_id: uuid(), label: "l".repeat(40) })) }))],
      ["patch", await send(`agents/${agentId}`, "PATCH", JSON.stringify({ scope_description: "s".repeat(MAX_BODY) }))],
    ]);
    // A streamed body under the limit is accepted.
    const small = await send("documents", "POST", JSON.stringify(validDoc({ title: "streamed" })));
    expect(small.status).toBe(201);
    await ctx.request("DELETE", `documents/${small.body.doc_id}`);
  });

  test("a body just under the limit is accepted", async () => {
    const base = JSON.stringify(validDoc({ chunks: [{ text: "" }] }));
    const body = JSON.stringify(validDoc({ chunks: [{ text: "u".repeat(MAX_BODY - base.length) }] }));
    expect(new TextEncoder().encode(body).length).toBe(MAX_BODY);
    const res = await ctx.request("POST", "documents", { rawBody: body, headers: { "content-length": String(body.length) } });
    expect(res.status).toBe(201);
    await ctx.request("DELETE", `documents/${res.body.doc_id}`);
  });
});

test("max_results over 100 is 400 validation_error", async () => {
  await expectRejectedWithoutWrites(400, "validation_error", async () => [
    ["list 101", await ctx.request("GET", "agents?max_results=101")],
    ["list 1000000", await ctx.request("GET", "agents?max_results=1000000")],
    ["list 0", await ctx.request("GET", "agents?max_results=0")],
    ["list -1", await ctx.request("GET", "agents?max_results=-1")],
    ["list text", await ctx.request("GET", "agents?max_results=all")],
    ["search 101", await ctx.request("GET", "agents/search?q=seed&max_results=101")],
  ]);
  expect((await ctx.request("GET", "agents?max_results=100")).status).toBe(200);
});

test("a gaps threshold outside [0, 1] is 400 validation_error", async () => {
  await expectRejectedWithoutWrites(400, "validation_error", async () => [
    ["-0.1", await ctx.request("GET", `agents/${agentId}/gaps?threshold=-0.1`)],
    ["1.5", await ctx.request("GET", `agents/${agentId}/gaps?threshold=1.5`)],
    ["text", await ctx.request("GET", `agents/${agentId}/gaps?threshold=half`)],
    ["NaN", await ctx.request("GET", `agents/${agentId}/gaps?threshold=NaN`)],
  ]);
  for (const ok of ["0", "1", "0.25"]) expect((await ctx.request("GET", `agents/${agentId}/gaps?threshold=${ok}`)).status).toBe(200);
});

test("top_k over 100 is 400 validation_error and the query is not counted", async () => {
  const before = (await ctx.request("GET", `agents/${agentId}`)).body.total_queries;
  await expectRejectedWithoutWrites(400, "validation_error", async () => [
    ["101", await ctx.request("POST", `agents/${agentId}/query`, { body: { query: "seed", top_k: 101 } })],
    ["huge", await ctx.request("POST", `agents/${agentId}/query`, { body: { query: "seed", top_k: 1e12 } })],
    ["0", await ctx.request("POST", `agents/${agentId}/query`, { body: { query: "seed", top_k: 0 } })],
    ["empty query", await ctx.request("POST", `agents/${agentId}/query`, { body: { query: "" } })],
  ]);
  expect((await ctx.request("GET", `agents/${agentId}`)).body.total_queries).toBe(before);
  expect((await ctx.request("POST", `agents/${agentId}/query`, { body: { query: "seed", top_k: 100 } })).status).toBe(200);
});

test("a non-JSON content-type is 415 unsupported_media_type", async () => {
  const json = JSON.stringify(validDoc());
  const types = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "application/octet-stream", "text/json"];
  await expectRejectedWithoutWrites(415, "unsupported_media_type", async () => {
    const out: [string, TestResponse][] = [];
    for (const type of types) {
      out.push([`documents ${type}`, await ctx.request("POST", "documents", { rawBody: json, headers: { "content-type": type } })]);
      out.push([`patch ${type}`, await ctx.request("PATCH", `agents/${agentId}`, { rawBody: '{"name":"x"}', headers: { "content-type": type } })]);
      out.push([`refresh ${type}`, await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { rawBody: "{}", headers: { "content-type": type } })]);
    }
    return out;
  });
  // JSON with parameters or a +json suffix is JSON.
  const charset = await ctx.request("POST", "documents", { rawBody: json, headers: { "content-type": "application/json; charset=utf-8" } });
  expect(charset.status).toBe(201);
  await ctx.request("DELETE", `documents/${charset.body.doc_id}`);
});

test("an unknown route is 404 not_found", async () => {
  await expectRejectedWithoutWrites(404, "not_found", async () => [
    ["api", await ctx.request("GET", "no-such-thing")],
    ["api nested", await ctx.request("POST", `agents/${agentId}/explode`, { body: {} })],
    ["wrong method", await ctx.request("PUT", `agents/${agentId}`, { body: { name: "x" } })],
    ["api root", await ctx.request("GET", "")],
    ["v2", await ctx.request("GET", "/api/v2/agents")],
    ["outside api", await ctx.request("GET", "/nope", { anonymous: true })],
  ]);
});

describe("garbage bodies never cause a 5xx", () => {
  const A = () => agentId;
  const ROUTES: [string, () => string][] = [
    ["POST", () => "taxonomies"],
    ["POST", () => "documents"],
    ["POST", () => "documents/bulk"],
    ["POST", () => "agents/from-taxonomy"],
    ["PATCH", () => `agents/${A()}`],
    ["POST", () => `agents/${A()}/query`],
    ["POST", () => `agents/${A()}/coverage/refresh?background=true`],
    ["POST", () => `agents/${A()}/coverage/refresh?background=false`],
  ];
  const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  const GARBAGE: string[] = [
    "[]",
    "[1,2,3]",
    '[{"version":"x"}]',
    "0",
    "-1",
    "1e400",
    "123456789012345678901234567890",
    "null",
    "true",
    '"just a string"',
    '"\\u0000"',
    '{"\\u0000":"\\u0000"}',
    '{"a":{"b":{"c":[[[[{"d":null}]]]]}}}',
    nested(900),
    '{"version":[],"nodes":{},"title":1e308,"chunks":"x","mappings":null,"documents":[null],"name":{},"query":[],"top_k":-1e400}',
    '{"version":"x","nodes":[null,1,"a",[]]}',
    '{"documents":[1,"x",null,{}]}',
    '{"title":"t","chunks":[{"text":"x","token_count":99999999999999999999}],"mappings":[]}',
    '{"title":"t","chunks":[{"text":"x","token_count":2147483648}],"mappings":[]}',
    '{"name":"n","taxonomy_node_ids":[],"level":1e400}',
    '{"query":"x","top_k":1e308}',
    '{"priority":"highest","webhook_url":"ftp://x/\\u0000"}',
  ];
  // Shape-valid bodies whose strings carry NUL bytes: PostgreSQL cannot store them, so they must be 4xx.
  const NUL = "bad\u0000text";
  const nulBodies = (): [string, string, unknown][] => [
    ["POST", "taxonomies", { version: V1, nodes: [{ node_id: uuid(), label: NUL }] }],
    ["POST", "documents", validDoc({ title: NUL })],
    ["POST", "documents", validDoc({ chunks: [{ text: NUL }] })],
    ["POST", "documents", validDoc({ source_url: NUL })],
    ["POST", "documents", validDoc({ content_type: NUL })],
    ["POST", "documents/bulk", { documents: [validDoc(), validDoc({ chunks: [{ text: "ok" }, { text: NUL }] })] }],
    ["POST", "agents/from-taxonomy", { name: NUL, taxonomy_node_ids: [root] }],
    ["POST", "agents/from-taxonomy", { name: "n", taxonomy_node_ids: [root], scope_description: NUL }],
    ["POST", "agents/from-taxonomy", { name: "n", taxonomy_node_ids: [root], retrieval_config: { key: NUL } }],
    ["POST", "agents/from-taxonomy", { name: "n", taxonomy_node_ids: [root], features_config: { [NUL]: 1 } }],
    ["PATCH", `agents/${agentId}`, { name: NUL }],
    ["PATCH", `agents/${agentId}`, { scope_description: NUL }],
    ["PATCH", `agents/${agentId}`, { retrieval_config: { nested: [NUL] } }],
    ["POST", `agents/${agentId}/query`, { query: NUL }],
    ["POST", `agents/${agentId}/coverage/refresh?background=true`, { webhook_url: `https://example.com/${NUL}` }],
  ];

  test("every POST/PATCH route answers 4xx in the error shape to every garbage body", async () => {
    const before = await snapshot();
    const keysBefore = await queuedKeys();
    for (const [method, path] of ROUTES) {
      for (const raw of GARBAGE) {
        const res = await ctx.request(method, path(), { rawBody: raw });
        const what = `${method} ${path()} ${raw.slice(0, 60)}`;
        expect({ what, status: res.status, fourXX: res.status >= 400 && res.status < 500 }).toEqual({ what, status: res.status, fourXX: true });
        expectError(res, res.status, res.body?.error?.code, what);
      }
    }
    expect(await snapshot()).toEqual(before);
    expect(await queuedKeys()).toEqual(keysBefore);
  });

  test("strings with NUL bytes are 400 validation_error and nothing is written", async () => {
    await expectRejectedWithoutWrites(400, "validation_error", async () => {
      const out: [string, TestResponse][] = [];
      for (const [method, path, body] of nulBodies()) out.push([`${method} ${path} ${JSON.stringify(body).slice(0, 80)}`, await ctx.request(method, path, { body })]);
      return out;
    });
  });

  test("garbage query strings never cause a 5xx", async () => {
    const paths = [
      "agents?level=abc",
      "agents?level=1e400",
      "agents?min_coverage=Infinity",
      "agents?min_coverage=-1",
      "agents?min_coverage=101",
      "agents?q=%00",
      `agents?q=${"x".repeat(201)}`,
      "agents?offset=-1",
      "agents/search?q=%00",
      "agents/search?q=%25%00_",
      `agents/${agentId}/gaps?threshold=1e400`,
      `agents/${agentId}/gaps?threshold=%00`,
      `agents/${agentId}/coverage/history?start_date=yesterday`,
      `agents/${agentId}/coverage/history?limit=-5`,
      `agents/${agentId}/coverage/history?limit=1e400`,
      "taxonomies/%00/nodes",
      `taxonomies/${"v".repeat(65)}/nodes`,
      "tasks/agent-coverage-%00",
    ];
    for (const path of paths) {
      const res = await ctx.request("GET", path);
      expect({ path, status: res.status }).toEqual({ path, status: 400 });
      expectError(res, 400, "validation_error", path);
    }
  });
});

/** `[[[…]]]` as JSON text: built as text, since JSON.stringify itself overflows past ~40,000 levels. */
const nestedArrays = (depth: number, leaf = "") => "[".repeat(depth) + leaf + "]".repeat(depth);
const nestedObjects = (depth: number, leaf = "1") => '{"a":'.repeat(depth) + leaf + "}".repeat(depth);

describe("hostile shapes, with the default limits (1 MiB bodies, depth 64, configs 32 levels and 16 KiB)", () => {
  // Its own app: bodies of tens of KB must meet the depth limit, not the 2 KiB size limit of `ctx`.
  let roomy: TestContext;
  let roomyAgent: string;
  const roomyRoot = uuid();
  beforeAll(async () => {
    roomy = await createTestContext();
    await postTaxonomy(roomy, V1, [{ node_id: roomyRoot, label: "Root" }]);
    roomyAgent = (await postAgent(roomy, { name: "roomy agent", taxonomy_node_ids: [roomyRoot], taxonomy_version: V1 })).agent_id;
  });
  afterAll(() => roomy.close());

  /** `deep` (JSON text) in every kind of place a body takes a value: arrays, objects, string fields, jsonb configs. */
  const deepBodies = (deep: string): [string, string, string][] => [
    ["POST", "documents", `{"title":"t","chunks":${deep},"mappings":[]}`],
    ["POST", "documents", `{"title":${deep},"chunks":[],"mappings":[]}`],
    ["POST", "documents/bulk", `{"documents":[{"title":"t","chunks":[{"text":${deep}}],"mappings":[]}]}`],
    ["POST", "taxonomies", `{"version":"v","nodes":${deep}}`],
    ["POST", "agents/from-taxonomy", `{"name":${deep},"taxonomy_node_ids":["${roomyRoot}"]}`],
    ["POST", "agents/from-taxonomy", `{"name":"n","taxonomy_node_ids":["${roomyRoot}"],"retrieval_config":{"a":${deep}}}`],
    ["PATCH", `agents/${roomyAgent}`, `{"features_config":{"a":${deep}}}`],
    ["PATCH", `agents/${roomyAgent}`, `{"name":${deep}}`],
    ["POST", `agents/${roomyAgent}/query`, `{"query":${deep}}`],
    ["POST", `agents/${roomyAgent}/coverage/refresh`, `{"webhook_url":${deep}}`],
    ["POST", `agents/${roomyAgent}/coverage/refresh?background=false`, deep],
  ];

  test("a body nested deeper than 64 levels is 400 validation_error on every route, whatever the field, and nothing is written", async () => {
    await expectRejectedWithoutWrites(
      400,
      "validation_error",
      async () => {
        const out: [string, TestResponse][] = [];
        for (const depth of [65, 1000, 20_000, 50_000])
          for (const deep of [nestedArrays(depth), nestedObjects(depth)])
            for (const [method, path, body] of deepBodies(deep)) {
              const res = await roomy.request(method, path, { rawBody: body });
              const what = `${method} ${path} depth ${depth} ${body.slice(0, 30)}`;
              expect({ what, max_depth: res.body?.error?.details?.max_depth }).toEqual({ what, max_depth: 64 });
              expect(res.body.error.message).toBe("invalid body: nested deeper than 64 levels of arrays and objects");
              out.push([what, res]);
            }
        return out;
      },
      roomy,
    );
  });

  test("a body exactly 64 levels deep is parsed and judged by its schema; brackets inside strings do not count", async () => {
    // Object, chunks array, then 62 levels: 64 in all.
    const atLimit = await roomy.request("POST", "documents", { rawBody: `{"title":"t","chunks":[${nestedArrays(62)}],"mappings":[]}` });
    expectError(atLimit, 400, "validation_error");
    expect(atLimit.body.error.message).toBe("invalid body: /chunks/0 Expected object");
    const bracketText = await roomy.request("POST", "documents", {
      body: { title: "[".repeat(1000), chunks: [{ text: "[{".repeat(20_000) }], mappings: [{ node_id: roomyRoot, version: V1, confidence: 0.9 }] },
    });
    expect(bracketText.status).toBe(201);
    await roomy.request("DELETE", `documents/${bracketText.body.doc_id}`);
  });

  test("the report's 20,000-deep chunks request (40 KB) answers in under 50 ms, and memory stays flat", async () => {
    const body = `{"title":"t","chunks":${nestedArrays(20_000)},"mappings":[]}`;
    expect(body.length).toBeGreaterThan(40_000);
    const send = () => roomy.request("POST", "documents", { rawBody: body });
    expectError(await send(), 400, "validation_error"); // warm up the route
    Bun.gc(true);
    const rssBefore = process.memoryUsage().rss;
    const took: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const res = await send();
      took.push(performance.now() - started);
      expectError(res, 400, "validation_error");
    }
    Bun.gc(true);
    const grownMiB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    took.sort((a, b) => a - b);
    // Before the depth limit: 8-10 s each and RSS from 140 MB to 2.5-3.8 GB. The median is the
    // claim; the slowest is bounded more loosely so a GC pause on a busy machine is no failure.
    expect({ medianUnder50ms: took[5]! < 50, slowestUnder250ms: took[9]! < 250, grewUnder32MiB: grownMiB < 32 }).toEqual({
      medianUnder50ms: true,
      slowestUnder250ms: true,
      grewUnder32MiB: true,
    });
  });

  describe("retrieval_config and features_config have a depth and a size limit of their own", () => {
    /** A config object `depth` levels deep (the object itself is level 1). */
    const configOfDepth = (depth: number) => {
      let value: Record<string, unknown> = { leaf: true };
      for (let i = 1; i < depth; i++) value = { a: value };
      return value;
    };
    /** A config whose JSON text is exactly `bytes` bytes. */
    const configOfSize = (bytes: number) => ({ blob: "x".repeat(bytes - '{"blob":""}'.length) });
    const agentBody = (over: Record<string, unknown>) => ({ name: "configured", taxonomy_node_ids: [roomyRoot], ...over });

    test("deeper than 32 levels is 400 validation_error naming the field, on create and patch", async () => {
      await expectRejectedWithoutWrites(
        400,
        "validation_error",
        async () => {
          const out: [string, TestResponse][] = [];
          for (const field of ["retrieval_config", "features_config"]) {
            out.push([`create ${field}`, await roomy.request("POST", "agents/from-taxonomy", { body: agentBody({ [field]: configOfDepth(33) }) })]);
            out.push([`patch ${field}`, await roomy.request("PATCH", `agents/${roomyAgent}`, { body: { [field]: configOfDepth(33) } })]);
          }
          for (const [what, res] of out) {
            const field = what.split(" ")[1];
            expect({ what, issues: res.body.error.details.issues }).toEqual({ what, issues: [{ path: `/${field}`, message: "nested deeper than 32 levels" }] });
            expect(res.body.error.details).toMatchObject({ on: "body", max_depth: 32, max_bytes: 16384 });
          }
          return out;
        },
        roomy,
      );
    });

    test("larger than 16 KiB of JSON is 400 validation_error naming the field; both fields are checked", async () => {
      await expectRejectedWithoutWrites(
        400,
        "validation_error",
        async () => {
          const both = await roomy.request("POST", "agents/from-taxonomy", {
            body: agentBody({ retrieval_config: configOfSize(16_385), features_config: configOfDepth(40) }),
          });
          expect(both.body.error.details.issues).toEqual([
            { path: "/retrieval_config", message: "larger than 16384 bytes of JSON" },
            { path: "/features_config", message: "nested deeper than 32 levels" },
          ]);
          // Bytes, not characters: 8,200 two-byte characters are 16,400 bytes.
          const wide = await roomy.request("PATCH", `agents/${roomyAgent}`, { body: { features_config: { blob: "é".repeat(8200) } } });
          expect(wide.body.error.message).toBe("invalid body: /features_config larger than 16384 bytes of JSON");
          return [
            ["both", both],
            ["two-byte characters", wide],
          ];
        },
        roomy,
      );
    });

    test("configs exactly at the limits are stored and read back", async () => {
      const created = await roomy.request("POST", "agents/from-taxonomy", {
        body: agentBody({ retrieval_config: configOfDepth(32), features_config: configOfSize(16_384) }),
      });
      expect(created.status).toBe(201);
      expect(created.body.retrieval_config).toEqual(configOfDepth(32));
      expect(JSON.stringify(created.body.features_config).length).toBe(16_384);
      const patched = await roomy.request("PATCH", `agents/${created.body.agent_id}`, { body: { retrieval_config: configOfSize(16_384) } });
      expect(patched.status).toBe(200);
      expect((await roomy.request("DELETE", `agents/${created.body.agent_id}`)).status).toBe(204);
    });
  });

  test("error formatting is bounded: no value, however wide, makes a long error", async () => {
    const manyStrings = Array.from({ length: 20_000 }, () => "value");
    const bigObject = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`key${i}`, "v".repeat(20)]));
    await expectRejectedWithoutWrites(
      400,
      "validation_error",
      async () => {
        const out: [string, TestResponse][] = [
          ["name array", await roomy.request("POST", "agents/from-taxonomy", { body: { name: manyStrings, taxonomy_node_ids: [roomyRoot] } })],
          ["name object", await roomy.request("POST", "agents/from-taxonomy", { body: { name: bigObject, taxonomy_node_ids: [roomyRoot] } })],
          ["title", await roomy.request("POST", "documents", { body: { title: manyStrings, chunks: [], mappings: [] } })],
          ["query", await roomy.request("POST", `agents/${roomyAgent}/query`, { body: { query: bigObject } })],
          ["webhook_url", await roomy.request("POST", `agents/${roomyAgent}/coverage/refresh`, { body: { webhook_url: manyStrings } })],
          ["chunks", await roomy.request("POST", "documents", { body: { title: "t", chunks: manyStrings.slice(0, 9000), mappings: [] } })],
        ];
        for (const [what, res] of out) {
          expect({ what, messageShort: res.body.error.message.length < 400, bodyShort: res.text.length < 8000 }).toEqual({ what, messageShort: true, bodyShort: true });
          expect(res.body.error.details.issues.length).toBeLessThanOrEqual(20);
        }
        expect(out[0]![1].body.error.message).toStartWith('invalid body: /name Expected string but found ["value","value",');
        expect(out[0]![1].body.error.message).toEndWith("…");
        return out;
      },
      roomy,
    );
  });
});

describe("error formatting is bounded even past the default depth limit", () => {
  // The deepest AGENTQ_MAX_JSON_DEPTH allowed: values 500 deep reach the schema validator and the error
  // formatter. In production mode, a value 5,000 deep in a string field used to overflow the stack
  // there and answer 500 text/plain "Something went wrong!".
  let lenient: TestContext;
  let lenientAgent: string;
  const lenientRoot = uuid();
  beforeAll(async () => {
    lenient = await createTestContext({ maxJsonDepth: 512 });
    await postTaxonomy(lenient, V1, [{ node_id: lenientRoot, label: "Root" }]);
    lenientAgent = (await postAgent(lenient, { taxonomy_node_ids: [lenientRoot], taxonomy_version: V1 })).agent_id;
  });
  afterAll(() => lenient.close());

  test("a value 500 levels deep in a string field is 400 validation_error with a short message", async () => {
    const deep = nestedArrays(500, '"x"');
    await expectRejectedWithoutWrites(
      400,
      "validation_error",
      async () => {
        const out: [string, TestResponse][] = [
          ["name", await lenient.request("POST", "agents/from-taxonomy", { rawBody: `{"name":${deep},"taxonomy_node_ids":["${lenientRoot}"]}` })],
          ["query", await lenient.request("POST", `agents/${lenientAgent}/query`, { rawBody: `{"query":${deep}}` })],
          ["title", await lenient.request("POST", "documents", { rawBody: `{"title":${deep},"chunks":[],"mappings":[]}` })],
          ["webhook_url", await lenient.request("POST", `agents/${lenientAgent}/coverage/refresh`, { rawBody: `{"webhook_url":${deep}}` })],
          ["retrieval_config", await lenient.request("PATCH", `agents/${lenientAgent}`, { rawBody: `{"retrieval_config":{"a":${deep}}}` })],
        ];
        for (const [what, res] of out) expect({ what, short: res.text.length < 2000 }).toEqual({ what, short: true });
        expect(out[0]![1].body.error.message).toBe('invalid body: /name Expected string but found [[[[…]]]]');
        expect(out[4]![1].body.error.message).toBe("invalid body: /retrieval_config nested deeper than 32 levels");
        return out;
      },
      lenient,
    );
  });
});

describe("impossible dates are 400 validation_error before any query", () => {
  const IMPOSSIBLE = [
    "2024-02-30T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-06-31T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "+275760-09-13T00:00:00Z",
    "275760-01-01T00:00:00Z",
    "2024-01-01T00:00:00-23:59",
    "2024-01-01T00:00:00+16:00",
    "9999-12-31T23:59:59-23:59",
    "2024-01-01T24:00:00Z",
    "2024-01-01T23:59:60Z",
    "Mon Jan 01 2024 00:00:00 GMT+0000 (Coordinated Universal Time)",
  ];

  test("start_date and end_date, on an agent that exists and on one that does not", async () => {
    await expectRejectedWithoutWrites(400, "validation_error", async () => {
      const out: [string, TestResponse][] = [];
      // The unknown agent would be a 404 if the date reached a query; the seed agent a 500 before.
      for (const agent of [agentId, uuid()])
        for (const param of ["start_date", "end_date"])
          for (const date of IMPOSSIBLE) {
            const res = await ctx.request("GET", `agents/${agent}/coverage/history?${param}=${encodeURIComponent(date)}`);
            expect(res.body?.error?.details?.issues?.[0]?.path).toBe(`/${param}`);
            out.push([`${param}=${date} ${agent === agentId ? "seed" : "unknown"} agent`, res]);
          }
      return out;
    });
    const res = await ctx.request("GET", `agents/${agentId}/coverage/history?start_date=2024-02-30T00:00:00Z`);
    expect(res.body.error.message).toBe('invalid query: /start_date 2024-02-30 is not a calendar date (value "2024-02-30T00:00:00Z")');
  });

  test("real dates at the edges of the range are accepted", async () => {
    for (const date of ["2024-02-29T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+15:59", "9999-12-31T23:59:59.999999-15:59", "2024-03-01 10:00:00+05:30"]) {
      const res = await ctx.request("GET", `agents/${agentId}/coverage/history?start_date=${encodeURIComponent(date)}&end_date=${encodeURIComponent(date)}`);
      expect({ date, status: res.status }).toEqual({ date, status: 200 });
      expect(res.body.start_date).toBe(date);
    }
  });
});

describe("PostgreSQL data errors caused by input are 400 validation_error", () => {
  /** The error a statement throws (a real one from PostgreSQL). */
  const failure = async (run: () => Promise<unknown>) => {
    try {
      await run();
    } catch (error) {
      return error;
    }
    throw new Error("the statement did not fail");
  };
  const deepJson = nestedArrays(20_000);

  test("the 22xxx class and 54001, raw from the driver or wrapped by Drizzle", async () => {
    const { sql: raw } = ctx.database;
    const db = ctx.database.db;
    const cases: [string, string, () => Promise<unknown>][] = [
      ["22008", "impossible date", () => raw`select ${"2024-02-30T00:00:00Z"}::timestamptz`],
      ["22008", "year 0", () => db.execute(drizzleSql`select ${"0000-01-01T00:00:00Z"}::timestamptz`)],
      ["22007", "not a date", () => raw`select ${"soon"}::timestamptz`],
      ["22012", "division by zero (the class, no entry of its own)", () => raw`select 1 / ${0}::int`],
      ["22003", "out of range", () => raw`select ${"40000"}::smallint`],
      ["22P02", "bad jsonb", () => raw`select ${"{bad"}::jsonb`],
      ["54001", "jsonb too deep", () => db.execute(drizzleSql`select ${deepJson}::jsonb`)],
    ];
    for (const [state, what, run] of cases) {
      const error = await failure(run);
      expect({ what, state: sqlState(error)?.code }).toEqual({ what, state });
      const mapped = toErrorResponse("UNKNOWN", error);
      expect({ what, status: mapped.status, code: mapped.body.error.code, internal: mapped.internal }).toEqual({
        what,
        status: 400,
        code: "validation_error",
        internal: false,
      });
      expect(JSON.stringify(mapped.body).length).toBeLessThan(1000);
    }
  });

  test("a failed statement's log entry is bounded, however large its parameters", async () => {
    const error = await failure(() => ctx.database.db.execute(drizzleSql`select ${deepJson}::jsonb`));
    // Drizzle's message quotes the statement and every parameter: 40 KB here.
    expect((error as Error).message.length).toBeGreaterThan(40_000);
    const logged = JSON.stringify(errorForLog(error));
    expect(logged.length).toBeLessThan(12_000);
    expect(JSON.parse(logged)).toMatchObject({ type: expect.any(String), cause: { code: "54001" } });
  });
});
