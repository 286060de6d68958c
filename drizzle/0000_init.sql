CREATE TABLE "agents" (
	"agent_id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"taxonomy_node_ids" uuid[] NOT NULL,
	"taxonomy_version" text NOT NULL,
	"scope_description" text,
	"level" integer DEFAULT 1 NOT NULL,
	"total_documents" integer DEFAULT 0 NOT NULL,
	"total_chunks" integer DEFAULT 0 NOT NULL,
	"coverage_percent" double precision DEFAULT 0 NOT NULL,
	"last_coverage_update" timestamp with time zone,
	"retrieval_config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"features_config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"total_queries" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "agents_level_range" CHECK ("agents"."level" between 1 and 5),
	CONSTRAINT "agents_coverage_percent_range" CHECK ("agents"."coverage_percent" >= 0 and "agents"."coverage_percent" <= 100),
	CONSTRAINT "agents_total_documents_nonnegative" CHECK ("agents"."total_documents" >= 0),
	CONSTRAINT "agents_total_chunks_nonnegative" CHECK ("agents"."total_chunks" >= 0),
	CONSTRAINT "agents_total_queries_nonnegative" CHECK ("agents"."total_queries" >= 0),
	CONSTRAINT "agents_name_not_blank" CHECK (length("agents"."name") between 1 and 200)
);
--> statement-breakpoint
CREATE TABLE "api_keys" (
	"key_id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"key_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	CONSTRAINT "api_keys_key_hash_key" UNIQUE("key_hash"),
	CONSTRAINT "api_keys_name_not_blank" CHECK (length("api_keys"."name") between 1 and 200)
);
--> statement-breakpoint
CREATE TABLE "background_tasks" (
	"task_id" text PRIMARY KEY NOT NULL,
	"agent_id" uuid NOT NULL,
	"task_type" text DEFAULT 'coverage_refresh' NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"priority" text DEFAULT 'medium' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"completed_at" timestamp with time zone,
	"result" jsonb,
	"error" text,
	"webhook_url" text,
	"webhook_retry_count" integer DEFAULT 0 NOT NULL,
	"cancellation_requested" boolean DEFAULT false NOT NULL,
	"queue_position" integer,
	"progress_percentage" integer DEFAULT 0 NOT NULL,
	"estimated_completion_at" timestamp with time zone,
	"attempt" integer DEFAULT 0 NOT NULL,
	"max_attempts" integer DEFAULT 3 NOT NULL,
	"lease_token" uuid,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"timeout_ms" integer DEFAULT 300000 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "background_tasks_status_values" CHECK ("background_tasks"."status" in ('pending', 'running', 'completed', 'failed', 'cancelled', 'timeout')),
	CONSTRAINT "background_tasks_priority_values" CHECK ("background_tasks"."priority" in ('high', 'medium', 'low')),
	CONSTRAINT "background_tasks_task_type_values" CHECK ("background_tasks"."task_type" in ('coverage_refresh')),
	CONSTRAINT "background_tasks_progress_range" CHECK ("background_tasks"."progress_percentage" >= 0 and "background_tasks"."progress_percentage" <= 100),
	CONSTRAINT "background_tasks_attempt_range" CHECK ("background_tasks"."attempt" >= 0 and "background_tasks"."max_attempts" >= 1),
	CONSTRAINT "background_tasks_webhook_retry_nonnegative" CHECK ("background_tasks"."webhook_retry_count" >= 0),
	CONSTRAINT "background_tasks_timeout_positive" CHECK ("background_tasks"."timeout_ms" > 0)
);
--> statement-breakpoint
CREATE TABLE "chunks" (
	"chunk_id" uuid PRIMARY KEY NOT NULL,
	"doc_id" uuid NOT NULL,
	"chunk_index" integer NOT NULL,
	"text" text NOT NULL,
	"token_count" integer NOT NULL,
	"tsv" "tsvector" GENERATED ALWAYS AS (to_tsvector('english', "text")) STORED NOT NULL,
	CONSTRAINT "chunks_doc_id_chunk_index_key" UNIQUE("doc_id","chunk_index"),
	CONSTRAINT "chunks_chunk_index_nonnegative" CHECK ("chunks"."chunk_index" >= 0),
	CONSTRAINT "chunks_token_count_nonnegative" CHECK ("chunks"."token_count" >= 0)
);
--> statement-breakpoint
CREATE TABLE "coverage_history" (
	"history_id" bigserial PRIMARY KEY NOT NULL,
	"agent_id" uuid NOT NULL,
	"timestamp" timestamp with time zone DEFAULT now() NOT NULL,
	"overall_coverage" double precision NOT NULL,
	"total_documents" integer NOT NULL,
	"total_chunks" integer NOT NULL,
	"version" text NOT NULL,
	"task_id" text,
	CONSTRAINT "coverage_history_task_id_key" UNIQUE("task_id"),
	CONSTRAINT "coverage_history_overall_range" CHECK ("coverage_history"."overall_coverage" >= 0 and "coverage_history"."overall_coverage" <= 100),
	CONSTRAINT "coverage_history_total_documents_nonnegative" CHECK ("coverage_history"."total_documents" >= 0),
	CONSTRAINT "coverage_history_total_chunks_nonnegative" CHECK ("coverage_history"."total_chunks" >= 0)
);
--> statement-breakpoint
CREATE TABLE "coverage_targets" (
	"agent_id" uuid NOT NULL,
	"node_id" uuid NOT NULL,
	"target_document_count" integer NOT NULL,
	CONSTRAINT "coverage_targets_pkey" PRIMARY KEY("agent_id","node_id"),
	CONSTRAINT "coverage_targets_target_positive" CHECK ("coverage_targets"."target_document_count" >= 1)
);
--> statement-breakpoint
CREATE TABLE "doc_taxonomy" (
	"doc_id" uuid NOT NULL,
	"node_id" uuid NOT NULL,
	"version" text NOT NULL,
	"confidence" double precision NOT NULL,
	CONSTRAINT "doc_taxonomy_pkey" PRIMARY KEY("doc_id","node_id","version"),
	CONSTRAINT "doc_taxonomy_confidence_range" CHECK ("doc_taxonomy"."confidence" >= 0 and "doc_taxonomy"."confidence" <= 1)
);
--> statement-breakpoint
CREATE TABLE "documents" (
	"doc_id" uuid PRIMARY KEY NOT NULL,
	"title" text NOT NULL,
	"source_url" text,
	"content_type" text DEFAULT 'text/plain' NOT NULL,
	"chunk_count" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "documents_chunk_count_nonnegative" CHECK ("documents"."chunk_count" >= 0)
);
--> statement-breakpoint
CREATE TABLE "taxonomy_edges" (
	"parent_id" uuid NOT NULL,
	"child_id" uuid NOT NULL,
	"version" text NOT NULL,
	CONSTRAINT "taxonomy_edges_pkey" PRIMARY KEY("parent_id","child_id","version"),
	CONSTRAINT "taxonomy_edges_no_self_loop" CHECK ("taxonomy_edges"."parent_id" <> "taxonomy_edges"."child_id")
);
--> statement-breakpoint
CREATE TABLE "taxonomy_nodes" (
	"node_id" uuid NOT NULL,
	"version" text NOT NULL,
	"label" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "taxonomy_nodes_pkey" PRIMARY KEY("node_id","version"),
	CONSTRAINT "taxonomy_nodes_version_not_blank" CHECK (length("taxonomy_nodes"."version") between 1 and 64)
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"delivery_attempt_id" bigserial PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"url" text NOT NULL,
	"attempt" integer NOT NULL,
	"status_code" integer,
	"error" text,
	"duration_ms" integer,
	"next_attempt_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "webhook_deliveries_attempt_positive" CHECK ("webhook_deliveries"."attempt" >= 1),
	CONSTRAINT "webhook_deliveries_duration_nonnegative" CHECK ("webhook_deliveries"."duration_ms" is null or "webhook_deliveries"."duration_ms" >= 0)
);
--> statement-breakpoint
ALTER TABLE "background_tasks" ADD CONSTRAINT "background_tasks_agent_id_agents_agent_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("agent_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "chunks" ADD CONSTRAINT "chunks_doc_id_documents_doc_id_fk" FOREIGN KEY ("doc_id") REFERENCES "public"."documents"("doc_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coverage_history" ADD CONSTRAINT "coverage_history_agent_id_agents_agent_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("agent_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coverage_targets" ADD CONSTRAINT "coverage_targets_agent_id_agents_agent_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("agent_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "doc_taxonomy" ADD CONSTRAINT "doc_taxonomy_doc_id_documents_doc_id_fk" FOREIGN KEY ("doc_id") REFERENCES "public"."documents"("doc_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "doc_taxonomy" ADD CONSTRAINT "doc_taxonomy_node_fk" FOREIGN KEY ("node_id","version") REFERENCES "public"."taxonomy_nodes"("node_id","version") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "taxonomy_edges" ADD CONSTRAINT "taxonomy_edges_parent_fk" FOREIGN KEY ("parent_id","version") REFERENCES "public"."taxonomy_nodes"("node_id","version") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "taxonomy_edges" ADD CONSTRAINT "taxonomy_edges_child_fk" FOREIGN KEY ("child_id","version") REFERENCES "public"."taxonomy_nodes"("node_id","version") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_task_id_background_tasks_task_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."background_tasks"("task_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agents_taxonomy_node_ids_gin" ON "agents" USING gin ("taxonomy_node_ids");--> statement-breakpoint
CREATE INDEX "agents_name_lower_idx" ON "agents" USING btree (lower("name"));--> statement-breakpoint
CREATE INDEX "background_tasks_agent_id_idx" ON "background_tasks" USING btree ("agent_id");--> statement-breakpoint
CREATE INDEX "background_tasks_status_idx" ON "background_tasks" USING btree ("status");--> statement-breakpoint
CREATE INDEX "background_tasks_created_at_idx" ON "background_tasks" USING btree ("created_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "background_tasks_agent_status_idx" ON "background_tasks" USING btree ("agent_id","status");--> statement-breakpoint
CREATE INDEX "chunks_tsv_idx" ON "chunks" USING gin ("tsv");--> statement-breakpoint
CREATE INDEX "coverage_history_agent_id_idx" ON "coverage_history" USING btree ("agent_id");--> statement-breakpoint
CREATE INDEX "coverage_history_timestamp_idx" ON "coverage_history" USING btree ("timestamp" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "coverage_history_agent_timestamp_idx" ON "coverage_history" USING btree ("agent_id","timestamp" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "doc_taxonomy_node_version_idx" ON "doc_taxonomy" USING btree ("node_id","version","confidence","doc_id");--> statement-breakpoint
CREATE INDEX "taxonomy_edges_version_parent_idx" ON "taxonomy_edges" USING btree ("version","parent_id");--> statement-breakpoint
CREATE INDEX "taxonomy_edges_version_child_idx" ON "taxonomy_edges" USING btree ("version","child_id");--> statement-breakpoint
CREATE INDEX "taxonomy_nodes_version_idx" ON "taxonomy_nodes" USING btree ("version");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_task_id_idx" ON "webhook_deliveries" USING btree ("task_id","attempt");