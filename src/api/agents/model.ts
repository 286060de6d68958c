import { t } from "elysia";
import { Timestamp, Uuid, Version } from "../common.ts";

const JsonObject = t.Record(t.String(), t.Unknown(), {
  description: "Free-form JSON object; on input at most AGENTQ_MAX_CONFIG_DEPTH (32) levels deep and AGENTQ_MAX_CONFIG_BYTES (16384) bytes of JSON",
});
const Targets = t.Record(t.String({ format: "uuid" }), t.Integer({ minimum: 1, maximum: 1_000_000 }), {
  description: "Per-node target document counts (node_id -> count); replaces the agent's whole set",
});

/** The bounds of max_concurrent_refreshes (the CHECK on agents says the same). */
export const MAX_CONCURRENT_REFRESHES_BOUND = 10_000;
const MaxConcurrentRefreshes = t.Nullable(
  t.Integer({
    minimum: 1,
    maximum: MAX_CONCURRENT_REFRESHES_BOUND,
    description:
      "At most this many of the agent's refreshes run at once, across every supervisor; more wait in the queue without holding up other agents' tasks. null (the default): no limit",
  }),
);

const agentFields = {
  name: t.String({ minLength: 1, maxLength: 200 }),
  taxonomy_node_ids: t.Array(Uuid, { minItems: 1, maxItems: 1000, description: "Root nodes of the scope" }),
  taxonomy_version: Version,
  scope_description: t.String({ maxLength: 5000 }),
  level: t.Integer({ minimum: 1, maximum: 5 }),
  retrieval_config: JsonObject,
  features_config: JsonObject,
  coverage_targets: Targets,
  max_concurrent_refreshes: MaxConcurrentRefreshes,
};

export const AgentCreate = t.Object(
  {
    name: agentFields.name,
    taxonomy_node_ids: agentFields.taxonomy_node_ids,
    taxonomy_version: t.Optional(agentFields.taxonomy_version),
    scope_description: t.Optional(agentFields.scope_description),
    level: t.Optional(agentFields.level),
    retrieval_config: t.Optional(agentFields.retrieval_config),
    features_config: t.Optional(agentFields.features_config),
    coverage_targets: t.Optional(agentFields.coverage_targets),
    max_concurrent_refreshes: t.Optional(agentFields.max_concurrent_refreshes),
  },
  { additionalProperties: false },
);

export const AgentPatch = t.Partial(t.Object(agentFields, { additionalProperties: false }), { additionalProperties: false, minProperties: 1 });

export const Agent = t.Object({
  agent_id: Uuid,
  name: t.String(),
  taxonomy_node_ids: t.Array(Uuid),
  taxonomy_version: t.String(),
  scope_description: t.Nullable(t.String()),
  level: t.Integer(),
  total_documents: t.Integer(),
  total_chunks: t.Integer(),
  coverage_percent: t.Number(),
  last_coverage_update: t.Nullable(Timestamp),
  retrieval_config: JsonObject,
  features_config: JsonObject,
  total_queries: t.Integer(),
  coverage_targets: t.Record(t.String(), t.Integer()),
  max_concurrent_refreshes: t.Nullable(t.Integer({ description: "At most this many of the agent's refreshes run at once; null: no limit" })),
  next_run_at: t.Nullable(Timestamp, { description: "Next scheduled refresh (PUT /agents/{agent_id}/schedule); null without an enabled schedule" }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const AgentList = t.Object({
  agents: t.Array(Agent),
  total: t.Integer({ description: "Agents matching the filters (before max_results)" }),
  filters_applied: t.Record(t.String(), t.Unknown()),
});

export const ListQuery = t.Object(
  {
    level: t.Optional(t.Integer({ minimum: 1, maximum: 5 })),
    min_coverage: t.Optional(t.Number({ minimum: 0, maximum: 100 })),
    q: t.Optional(t.String({ maxLength: 200 })),
    max_results: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50 })),
    offset: t.Optional(t.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const SearchQuery = t.Object(
  {
    q: t.String({ minLength: 1, maxLength: 200 }),
    max_results: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50 })),
  },
  { additionalProperties: false },
);

export const AgentParams = t.Object({ agent_id: Uuid });

export const Coverage = t.Object({
  agent_id: Uuid,
  overall_coverage: t.Number({ minimum: 0, maximum: 100 }),
  total_documents: t.Integer(),
  total_chunks: t.Integer(),
  node_coverage: t.Record(
    t.String(),
    t.Object({
      document_count: t.Integer(),
      chunk_count: t.Integer(),
      target: t.Integer(),
      coverage_percent: t.Number(),
    }),
  ),
  version: t.String(),
  calculated_at: Timestamp,
});

export const GapsQuery = t.Object(
  { threshold: t.Optional(t.Number({ minimum: 0, maximum: 1, default: 0.5 })) },
  { additionalProperties: false },
);

export const Gaps = t.Object({
  agent_id: Uuid,
  threshold: t.Number(),
  gaps: t.Array(
    t.Object({
      node_id: Uuid,
      current_coverage: t.Number(),
      target_coverage: t.Number(),
      missing_docs: t.Integer(),
      recommendation: t.String(),
    }),
  ),
  detected_at: Timestamp,
});

export const QueryIn = t.Object(
  {
    query: t.String({ minLength: 1, maxLength: 1000 }),
    top_k: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 10 })),
  },
  { additionalProperties: false },
);

export const QueryOut = t.Object({
  agent_id: Uuid,
  query: t.String(),
  results: t.Array(
    t.Object({
      chunk_id: Uuid,
      doc_id: Uuid,
      title: t.String(),
      chunk_index: t.Integer(),
      text: t.String(),
      score: t.Number(),
    }),
  ),
  total: t.Integer(),
});
