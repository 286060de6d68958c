import { t } from "elysia";
import { Uuid, Version } from "../common.ts";

export const DocumentIn = t.Object(
  {
    doc_id: t.Optional(Uuid),
    title: t.String({ minLength: 1, maxLength: 1000 }),
    source_url: t.Optional(t.String({ maxLength: 2048 })),
    content_type: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
    chunks: t.Array(
      t.Object(
        {
          text: t.String({ maxLength: 100_000 }),
          token_count: t.Optional(t.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
      { maxItems: 10_000 },
    ),
    mappings: t.Array(
      t.Object(
        {
          node_id: Uuid,
          version: Version,
          confidence: t.Number({ minimum: 0, maximum: 1 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);

export const DocumentWritten = t.Object({
  doc_id: Uuid,
  chunk_count: t.Integer(),
  mapping_count: t.Integer(),
});

export const BulkIn = t.Object({ documents: t.Array(DocumentIn, { minItems: 1 }) }, { additionalProperties: false });

export const BulkWritten = t.Object({
  documents: t.Array(DocumentWritten),
  doc_ids: t.Array(Uuid),
  total: t.Integer(),
});
