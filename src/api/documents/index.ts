import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors, Uuid } from "../common.ts";
import { ErrorBody } from "../errors.ts";
import { BulkIn, BulkWritten, DocumentIn, DocumentWritten } from "./model.ts";
import { deleteDocument, insertDocuments } from "../../db/documents.ts";
import { AppError, notFound } from "../../core/errors.ts";

export const documentRoutes = (deps: AppDeps) =>
  new Elysia({ name: "agentq.documents", tags: ["documents"] })
    .post(
      "/documents",
      async ({ body, status }) => {
        const [written] = await insertDocuments(deps.database.db, [body]);
        return status(201, written!);
      },
      {
        body: DocumentIn,
        response: { 201: DocumentWritten, ...authErrors, 409: ErrorBody },
        detail: {
          summary: "Add a document with its chunks and taxonomy mappings",
          description: "Chunks get chunk_index in the order sent. Every mapping must name a node of its version (400 otherwise). An existing doc_id is a 409.",
        },
      },
    )
    .post(
      "/documents/bulk",
      async ({ body, status }) => {
        if (body.documents.length > deps.config.bulkMaxDocuments)
          throw new AppError("too_many_documents", `at most ${deps.config.bulkMaxDocuments} documents per bulk request`, {
            max: deps.config.bulkMaxDocuments,
            got: body.documents.length,
          });
        const written = await insertDocuments(deps.database.db, body.documents);
        return status(201, { documents: written, doc_ids: written.map((d) => d.doc_id), total: written.length });
      },
      {
        body: BulkIn,
        response: { 201: BulkWritten, ...authErrors, 409: ErrorBody },
        detail: { summary: "Add many documents in one transaction (all or nothing)" },
      },
    )
    .delete(
      "/documents/:doc_id",
      async ({ params, status }) => {
        if (!(await deleteDocument(deps.database.db, params.doc_id))) throw notFound("document", params.doc_id);
        return status(204, undefined);
      },
      {
        params: t.Object({ doc_id: Uuid }),
        response: { 204: t.Void(), ...authErrors, 404: ErrorBody },
        detail: { summary: "Delete a document, its chunks and mappings" },
      },
    );
