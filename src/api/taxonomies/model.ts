import { t } from "elysia";
import { Timestamp, Uuid, Version } from "../common.ts";

export const TaxonomyNodeIn = t.Object(
  {
    node_id: Uuid,
    label: t.String({ minLength: 1, maxLength: 500 }),
    parent_ids: t.Optional(t.Array(Uuid, { maxItems: 1000, description: "Parents in the same version" })),
  },
  { additionalProperties: false },
);

export const TaxonomyCreate = t.Object(
  {
    version: Version,
    nodes: t.Array(TaxonomyNodeIn, { minItems: 1, maxItems: 20000 }),
  },
  { additionalProperties: false },
);

export const TaxonomyWritten = t.Object({
  version: t.String(),
  nodes_written: t.Integer(),
  edges_written: t.Integer(),
  total_nodes: t.Integer(),
  total_edges: t.Integer(),
});

export const TaxonomyNodeOut = t.Object({
  node_id: Uuid,
  label: t.String(),
  version: t.String(),
  parent_ids: t.Array(Uuid),
  created_at: Timestamp,
});

export const TaxonomyNodes = t.Object({
  version: t.String(),
  nodes: t.Array(TaxonomyNodeOut),
  total: t.Integer(),
});
