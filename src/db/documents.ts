/** Statements on documents, chunks and doc_taxonomy. */
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { AppError } from "../core/errors.ts";

export interface DocumentInput {
  doc_id?: string;
  title: string;
  source_url?: string;
  content_type?: string;
  chunks: { text: string; token_count?: number }[];
  mappings: { node_id: string; version: string; confidence: number }[];
}

export interface InsertedDocument {
  doc_id: string;
  chunk_count: number;
  mapping_count: number;
}

/** Whitespace-separated words: a tokenizer-free estimate when the client sends none. */
export const estimateTokens = (text: string) => (text.trim() === "" ? 0 : text.trim().split(/\s+/).length);

/**
 * Inserts documents with their chunks and mappings in one transaction and a
 * fixed number of statements (jsonb_to_recordset), whatever the batch size.
 * Every mapping must name a node of its version; otherwise nothing is written.
 */
export async function insertDocuments(db: Db, docs: DocumentInput[]): Promise<InsertedDocument[]> {
  const withIds = docs.map((d) => ({ ...d, doc_id: d.doc_id ?? randomUUID() }));
  const seen = new Set<string>();
  for (const d of withIds) {
    if (seen.has(d.doc_id)) throw new AppError("conflict", `doc_id ${d.doc_id} appears twice in the request`, { doc_id: d.doc_id });
    seen.add(d.doc_id);
  }
  const documentRows = withIds.map((d) => ({
    doc_id: d.doc_id,
    title: d.title,
    source_url: d.source_url ?? null,
    content_type: d.content_type ?? "text/plain",
    chunk_count: d.chunks.length,
  }));
  const chunkRows = withIds.flatMap((d) =>
    d.chunks.map((c, i) => ({
      chunk_id: randomUUID(),
      doc_id: d.doc_id,
      chunk_index: i,
      text: c.text,
      token_count: c.token_count ?? estimateTokens(c.text),
    })),
  );
  const mappingRows = withIds.flatMap((d) => {
    // The same (node, version) twice in one document keeps its highest confidence.
    const best = new Map<string, { doc_id: string; node_id: string; version: string; confidence: number }>();
    for (const m of d.mappings) {
      const key = `${m.node_id}\u0000${m.version}`;
      const prev = best.get(key);
      if (!prev || prev.confidence < m.confidence) best.set(key, { doc_id: d.doc_id, ...m });
    }
    return [...best.values()];
  });

  return db.transaction(async (tx) => {
    if (mappingRows.length > 0) {
      const missing = await tx.execute<{ node_id: string; version: string }>(sql`
        select distinct x.node_id, x.version
        from jsonb_to_recordset(${JSON.stringify(mappingRows)}::jsonb) as x(node_id uuid, version text)
        where not exists (select 1 from taxonomy_nodes n where n.node_id = x.node_id and n.version = x.version)`);
      if (missing.length > 0)
        throw new AppError("unknown_taxonomy_node", "mappings name taxonomy nodes that do not exist in their version", {
          missing: [...missing],
        });
    }
    const existing = await tx.execute<{ doc_id: string }>(sql`
      select doc_id from documents where doc_id in (
        select x.doc_id from jsonb_to_recordset(${JSON.stringify(documentRows)}::jsonb) as x(doc_id uuid))`);
    if (existing.length > 0)
      throw new AppError("conflict", "documents with these ids already exist", { doc_ids: existing.map((r) => r.doc_id) });

    await tx.execute(sql`
      insert into documents (doc_id, title, source_url, content_type, chunk_count)
      select * from jsonb_to_recordset(${JSON.stringify(documentRows)}::jsonb)
        as x(doc_id uuid, title text, source_url text, content_type text, chunk_count int)`);
    if (chunkRows.length > 0)
      await tx.execute(sql`
        insert into chunks (chunk_id, doc_id, chunk_index, text, token_count)
        select * from jsonb_to_recordset(${JSON.stringify(chunkRows)}::jsonb)
          as x(chunk_id uuid, doc_id uuid, chunk_index int, text text, token_count int)`);
    if (mappingRows.length > 0)
      await tx.execute(sql`
        insert into doc_taxonomy (doc_id, node_id, version, confidence)
        select * from jsonb_to_recordset(${JSON.stringify(mappingRows)}::jsonb)
          as x(doc_id uuid, node_id uuid, version text, confidence double precision)`);
    return withIds.map((d) => ({
      doc_id: d.doc_id,
      chunk_count: d.chunks.length,
      mapping_count: mappingRows.filter((m) => m.doc_id === d.doc_id).length,
    }));
  });
}

export async function deleteDocument(db: Db, docId: string): Promise<boolean> {
  const rows = await db.execute(sql`delete from documents where doc_id = ${docId} returning doc_id`);
  return rows.length > 0;
}
