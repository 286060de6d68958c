import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";

const BULK_MAX = 3;

let ctx: TestContext;
const V1 = "docs-1.0";
const V2 = "docs-2.0";
let nodeA: string; // in V1
let nodeB: string; // in V1
let nodeOnlyV2: string; // only in V2

beforeAll(async () => {
  ctx = await createTestContext({ bulkMaxDocuments: BULK_MAX });
  nodeA = uuid();
  nodeB = uuid();
  nodeOnlyV2 = uuid();
  await postTaxonomy(ctx, V1, [
    { node_id: nodeA, label: "A" },
    { node_id: nodeB, label: "B", parent_ids: [nodeA] },
  ]);
  await postTaxonomy(ctx, V2, [{ node_id: nodeOnlyV2, label: "only in v2" }]);
});
afterAll(() => ctx.close());

/** Row counts of every corpus table, to prove a rejected request wrote nothing. */
async function corpusCounts() {
  const [row] = await ctx.database.sql<{ documents: number; chunks: number; mappings: number }[]>`
    select (select count(*)::int from documents) as documents,
           (select count(*)::int from chunks) as chunks,
           (select count(*)::int from doc_taxonomy) as mappings`;
  return row!;
}

async function storedDocument(docId: string) {
  const docs = await ctx.database.sql`select doc_id::text, title, source_url, content_type, chunk_count from documents where doc_id = ${docId}`;
  const chunks = await ctx.database.sql<{ chunk_index: number; text: string; token_count: number }[]>`
    select chunk_index, text, token_count from chunks where doc_id = ${docId} order by chunk_index`;
  const mappings = await ctx.database.sql<{ node_id: string; version: string; confidence: number }[]>`
    select node_id::text, version, confidence from doc_taxonomy where doc_id = ${docId} order by version, node_id`;
  return { doc: docs[0], chunks: [...chunks], mappings: [...mappings] };
}

const doc = (over: Record<string, unknown> = {}) => ({
  title: "Title",
  chunks: [{ text: "first chunk" }],
  mappings: [{ node_id: nodeA, version: V1, confidence: 0.9 }],
  ...over,
});

describe("POST /documents", () => {
  test("201 with chunk_count and mapping_count; chunks are stored in the order sent", async () => {
    const docId = uuid();
    const texts = ["zeta comes first", "alpha second", "mu third", "beta fourth"];
    const res = await ctx.request("POST", "documents", {
      body: {
        doc_id: docId,
        title: "Ordered",
        source_url: "https://example.com/ordered",
        chunks: texts.map((text) => ({ text })),
        mappings: [
          { node_id: nodeA, version: V1, confidence: 0.9 },
          { node_id: nodeB, version: V1, confidence: 0.4 },
          { node_id: nodeOnlyV2, version: V2, confidence: 1 },
        ],
      },
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ doc_id: docId, chunk_count: 4, mapping_count: 3 });

    const stored = await storedDocument(docId);
    expect(stored.doc).toMatchObject({ doc_id: docId, title: "Ordered", source_url: "https://example.com/ordered", chunk_count: 4 });
    expect(stored.chunks.map((c) => [c.chunk_index, c.text])).toEqual(texts.map((t, i) => [i, t]));
    expect(stored.chunks.map((c) => c.token_count)).toEqual([3, 2, 2, 2]);
    expect(stored.mappings).toHaveLength(3);
  });

  test("without doc_id a fresh UUID is assigned", async () => {
    const res = await ctx.request("POST", "documents", { body: doc() });
    expect(res.status).toBe(201);
    expect(res.body.doc_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(res.body.chunk_count).toBe(1);
    expect(res.body.mapping_count).toBe(1);
    expect((await storedDocument(res.body.doc_id)).doc).toBeDefined();
  });

  test("a document with no chunks and no mappings is accepted", async () => {
    const res = await ctx.request("POST", "documents", { body: { title: "empty", chunks: [], mappings: [] } });
    expect(res.status).toBe(201);
    expect(res.body.chunk_count).toBe(0);
    expect(res.body.mapping_count).toBe(0);
  });

  test("a duplicate doc_id is 409 conflict and the existing document is untouched", async () => {
    const docId = uuid();
    await postDocument(ctx, { doc_id: docId, title: "original", chunks: ["one", "two"], mappings: [{ node_id: nodeA, version: V1, confidence: 0.8 }] });
    const before = await storedDocument(docId);
    const counts = await corpusCounts();

    const res = await ctx.request("POST", "documents", {
      body: doc({ doc_id: docId, title: "imposter", chunks: [{ text: "x" }, { text: "y" }, { text: "z" }], mappings: [{ node_id: nodeB, version: V1, confidence: 0.5 }] }),
    });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("conflict");
    expect(res.body.error.message.length).toBeGreaterThan(0);
    expect(await storedDocument(docId)).toEqual(before);
    expect(await corpusCounts()).toEqual(counts);
  });

  test("concurrent posts of one doc_id: exactly one 201, the rest 409, never a 500", async () => {
    const docId = uuid();
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => ctx.request("POST", "documents", { body: doc({ doc_id: docId, title: `racer ${i}` }) })),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 409, 409, 409, 409, 409]);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.error.code).toBe("conflict");
    const stored = await storedDocument(docId);
    expect(stored.chunks).toHaveLength(1);
    expect(stored.mappings).toHaveLength(1);
  });

  test("a mapping to a node of another version is 400 unknown_taxonomy_node and nothing is written", async () => {
    const docId = uuid();
    const counts = await corpusCounts();
    const res = await ctx.request("POST", "documents", {
      body: doc({
        doc_id: docId,
        chunks: [{ text: "a" }, { text: "b" }],
        mappings: [
          { node_id: nodeA, version: V1, confidence: 0.9 },
          { node_id: nodeOnlyV2, version: V1, confidence: 0.9 },
        ],
      }),
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("unknown_taxonomy_node");
    expect(res.body.error.message.length).toBeGreaterThan(0);
    expect(res.body.error.details.missing).toEqual([{ node_id: nodeOnlyV2, version: V1 }]);
    expect(await storedDocument(docId)).toEqual({ doc: undefined, chunks: [], mappings: [] });
    expect(await corpusCounts()).toEqual(counts);
  });

  test("a mapping to an unknown node is 400 and nothing is written", async () => {
    const docId = uuid();
    const counts = await corpusCounts();
    const res = await ctx.request("POST", "documents", {
      body: doc({ doc_id: docId, mappings: [{ node_id: uuid(), version: V1, confidence: 0.5 }] }),
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("unknown_taxonomy_node");
    expect(await storedDocument(docId)).toEqual({ doc: undefined, chunks: [], mappings: [] });
    expect(await corpusCounts()).toEqual(counts);
  });

  test("a mapping to an unknown version is 400 and nothing is written", async () => {
    const docId = uuid();
    const counts = await corpusCounts();
    const res = await ctx.request("POST", "documents", {
      body: doc({ doc_id: docId, mappings: [{ node_id: nodeA, version: "no-such-version", confidence: 0.5 }] }),
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("unknown_taxonomy_node");
    expect(await corpusCounts()).toEqual(counts);
  });
});

describe("POST /documents/bulk", () => {
  test("201 with the ids of every document, in the order sent", async () => {
    const given = uuid();
    const res = await ctx.request("POST", "documents/bulk", {
      body: {
        documents: [
          doc({ doc_id: given, title: "bulk 1", chunks: [{ text: "one" }, { text: "two" }] }),
          doc({ title: "bulk 2", mappings: [] }),
          doc({ title: "bulk 3", mappings: [{ node_id: nodeA, version: V1, confidence: 0.2 }, { node_id: nodeB, version: V1, confidence: 0.3 }] }),
        ],
      },
    });
    expect(res.status).toBe(201);
    expect(res.body.total).toBe(3);
    expect(res.body.doc_ids).toHaveLength(3);
    expect(res.body.doc_ids[0]).toBe(given);
    expect(new Set(res.body.doc_ids).size).toBe(3);
    expect(res.body.documents.map((d: { doc_id: string }) => d.doc_id)).toEqual(res.body.doc_ids);
    expect(res.body.documents.map((d: { chunk_count: number; mapping_count: number }) => [d.chunk_count, d.mapping_count])).toEqual([
      [2, 1],
      [1, 0],
      [1, 2],
    ]);
    const rows = await ctx.database.sql<{ doc_id: string; title: string }[]>`
      select doc_id::text, title from documents where doc_id = any(${res.body.doc_ids}::uuid[]) order by title`;
    expect(rows.map((r) => r.title)).toEqual(["bulk 1", "bulk 2", "bulk 3"]);
  });

  test("more documents than the configured maximum is 400 too_many_documents and nothing is written", async () => {
    const counts = await corpusCounts();
    const documents = Array.from({ length: BULK_MAX + 1 }, (_, i) => doc({ title: `too many ${i}` }));
    const res = await ctx.request("POST", "documents/bulk", { body: { documents } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("too_many_documents");
    expect(res.body.error.message.length).toBeGreaterThan(0);
    expect(res.body.error.details).toEqual({ max: BULK_MAX, got: BULK_MAX + 1 });
    expect(await corpusCounts()).toEqual(counts);
  });

  test("exactly the configured maximum is accepted", async () => {
    const documents = Array.from({ length: BULK_MAX }, (_, i) => doc({ title: `at max ${i}` }));
    const res = await ctx.request("POST", "documents/bulk", { body: { documents } });
    expect(res.status).toBe(201);
    expect(res.body.total).toBe(BULK_MAX);
  });

  test("a doc_id that already exists is 409 and none of the batch is written", async () => {
    const existing = uuid();
    await postDocument(ctx, { doc_id: existing, mappings: [] });
    const counts = await corpusCounts();
    const fresh = uuid();
    const res = await ctx.request("POST", "documents/bulk", {
      body: { documents: [doc({ doc_id: fresh }), doc({ doc_id: existing })] },
    });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("conflict");
    expect(await storedDocument(fresh)).toEqual({ doc: undefined, chunks: [], mappings: [] });
    expect(await corpusCounts()).toEqual(counts);
  });

  test("the same doc_id twice in one batch is 409 and nothing is written", async () => {
    const dup = uuid();
    const counts = await corpusCounts();
    const res = await ctx.request("POST", "documents/bulk", { body: { documents: [doc({ doc_id: dup }), doc({ doc_id: dup })] } });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("conflict");
    expect(await corpusCounts()).toEqual(counts);
  });

  test("one bad mapping in the batch is 400 and none of the batch is written", async () => {
    const counts = await corpusCounts();
    const ok = uuid();
    const res = await ctx.request("POST", "documents/bulk", {
      body: {
        documents: [
          doc({ doc_id: ok, chunks: [{ text: "good" }, { text: "chunks" }] }),
          doc({ mappings: [{ node_id: nodeOnlyV2, version: V1, confidence: 0.9 }] }),
        ],
      },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("unknown_taxonomy_node");
    expect(await storedDocument(ok)).toEqual({ doc: undefined, chunks: [], mappings: [] });
    expect(await corpusCounts()).toEqual(counts);
  });

  test("an empty batch is 400", async () => {
    const res = await ctx.request("POST", "documents/bulk", { body: { documents: [] } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_error");
  });
});

describe("DELETE /documents/{doc_id}", () => {
  test("204, removes chunks and mappings, then 404", async () => {
    const { doc_id } = await postDocument(ctx, {
      chunks: ["to be deleted", "also deleted"],
      mappings: [{ node_id: nodeA, version: V1, confidence: 0.9 }],
    });
    expect((await storedDocument(doc_id)).chunks).toHaveLength(2);

    const res = await ctx.request("DELETE", `documents/${doc_id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect(await storedDocument(doc_id)).toEqual({ doc: undefined, chunks: [], mappings: [] });

    const again = await ctx.request("DELETE", `documents/${doc_id}`);
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe("not_found");
    expect(again.body.error.message.length).toBeGreaterThan(0);
  });

  test("an unknown id is 404", async () => {
    const res = await ctx.request("DELETE", `documents/${uuid()}`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  });

  test("a malformed id is 400 validation_error", async () => {
    const res = await ctx.request("DELETE", "documents/not-a-uuid");
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_error");
  });
});
