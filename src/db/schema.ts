/**
 * The PostgreSQL schema (domain.md, "Tables"). drizzle-kit generates the
 * migrations in drizzle/ from this file; table and column COMMENTs live in a
 * custom SQL migration because drizzle cannot express them.
 */
import { sql } from "drizzle-orm";
import {
  check,
  customType,
  doublePrecision,
  foreignKey,
  index,
  uniqueIndex,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
  boolean,
  bigserial,
} from "drizzle-orm/pg-core";

const tsvector = customType<{ data: string }>({
  dataType: () => "tsvector",
});

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const taxonomyNodes = pgTable(
  "taxonomy_nodes",
  {
    nodeId: uuid("node_id").notNull(),
    version: text("version").notNull(),
    label: text("label").notNull(),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: "taxonomy_nodes_pkey", columns: [t.nodeId, t.version] }),
    index("taxonomy_nodes_version_idx").on(t.version),
    check("taxonomy_nodes_version_not_blank", sql`length(${t.version}) between 1 and 64`),
  ],
);

export const taxonomyEdges = pgTable(
  "taxonomy_edges",
  {
    parentId: uuid("parent_id").notNull(),
    childId: uuid("child_id").notNull(),
    version: text("version").notNull(),
  },
  (t) => [
    primaryKey({ name: "taxonomy_edges_pkey", columns: [t.parentId, t.childId, t.version] }),
    foreignKey({
      name: "taxonomy_edges_parent_fk",
      columns: [t.parentId, t.version],
      foreignColumns: [taxonomyNodes.nodeId, taxonomyNodes.version],
    }).onDelete("cascade"),
    foreignKey({
      name: "taxonomy_edges_child_fk",
      columns: [t.childId, t.version],
      foreignColumns: [taxonomyNodes.nodeId, taxonomyNodes.version],
    }).onDelete("cascade"),
    // The recursive scope walk goes parent -> children within one version.
    index("taxonomy_edges_version_parent_idx").on(t.version, t.parentId),
    index("taxonomy_edges_version_child_idx").on(t.version, t.childId),
    check("taxonomy_edges_no_self_loop", sql`${t.parentId} <> ${t.childId}`),
  ],
);

export const documents = pgTable(
  "documents",
  {
    docId: uuid("doc_id").primaryKey(),
    title: text("title").notNull(),
    sourceUrl: text("source_url"),
    contentType: text("content_type").notNull().default("text/plain"),
    /** Denormalised count of this document's chunks, written in the same transaction as the chunks. */
    chunkCount: integer("chunk_count").notNull().default(0),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [check("documents_chunk_count_nonnegative", sql`${t.chunkCount} >= 0`)],
);

export const chunks = pgTable(
  "chunks",
  {
    chunkId: uuid("chunk_id").primaryKey(),
    docId: uuid("doc_id")
      .notNull()
      .references(() => documents.docId, { onDelete: "cascade" }),
    chunkIndex: integer("chunk_index").notNull(),
    text: text("text").notNull(),
    tokenCount: integer("token_count").notNull(),
    tsv: tsvector("tsv")
      .notNull()
      .generatedAlwaysAs(sql`to_tsvector('english', "text")`),
  },
  (t) => [
    unique("chunks_doc_id_chunk_index_key").on(t.docId, t.chunkIndex),
    index("chunks_tsv_idx").using("gin", t.tsv),
    check("chunks_chunk_index_nonnegative", sql`${t.chunkIndex} >= 0`),
    check("chunks_token_count_nonnegative", sql`${t.tokenCount} >= 0`),
  ],
);

export const docTaxonomy = pgTable(
  "doc_taxonomy",
  {
    docId: uuid("doc_id")
      .notNull()
      .references(() => documents.docId, { onDelete: "cascade" }),
    nodeId: uuid("node_id").notNull(),
    version: text("version").notNull(),
    confidence: doublePrecision("confidence").notNull(),
  },
  (t) => [
    primaryKey({ name: "doc_taxonomy_pkey", columns: [t.docId, t.nodeId, t.version] }),
    foreignKey({
      name: "doc_taxonomy_node_fk",
      columns: [t.nodeId, t.version],
      foreignColumns: [taxonomyNodes.nodeId, taxonomyNodes.version],
    }).onDelete("cascade"),
    // The coverage meter looks mappings up by node; INCLUDE-like ordering keeps it index-only.
    index("doc_taxonomy_node_version_idx").on(t.nodeId, t.version, t.confidence, t.docId),
    check("doc_taxonomy_confidence_range", sql`${t.confidence} >= 0 and ${t.confidence} <= 1`),
  ],
);

export const agents = pgTable(
  "agents",
  {
    agentId: uuid("agent_id").primaryKey(),
    name: text("name").notNull(),
    taxonomyNodeIds: uuid("taxonomy_node_ids").array().notNull(),
    taxonomyVersion: text("taxonomy_version").notNull(),
    scopeDescription: text("scope_description"),
    level: integer("level").notNull().default(1),
    totalDocuments: integer("total_documents").notNull().default(0),
    totalChunks: integer("total_chunks").notNull().default(0),
    coveragePercent: doublePrecision("coverage_percent").notNull().default(0),
    lastCoverageUpdate: tstz("last_coverage_update"),
    retrievalConfig: jsonb("retrieval_config").notNull().default({}),
    featuresConfig: jsonb("features_config").notNull().default({}),
    totalQueries: integer("total_queries").notNull().default(0),
    /**
     * At most this many of the agent's tasks run at once, across every supervisor; null: no limit.
     * Enforced by the claim statement (src/db/tasks/claims.ts), which locks the agent row.
     */
    maxConcurrentRefreshes: integer("max_concurrent_refreshes"),
    createdAt: tstz("created_at").notNull().defaultNow(),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    index("agents_taxonomy_node_ids_gin").using("gin", t.taxonomyNodeIds),
    index("agents_name_lower_idx").on(sql`lower(${t.name})`),
    check("agents_level_range", sql`${t.level} between 1 and 5`),
    check("agents_coverage_percent_range", sql`${t.coveragePercent} >= 0 and ${t.coveragePercent} <= 100`),
    check("agents_total_documents_nonnegative", sql`${t.totalDocuments} >= 0`),
    check("agents_total_chunks_nonnegative", sql`${t.totalChunks} >= 0`),
    check("agents_total_queries_nonnegative", sql`${t.totalQueries} >= 0`),
    check("agents_name_not_blank", sql`length(${t.name}) between 1 and 200`),
    check("agents_max_concurrent_refreshes_range", sql`${t.maxConcurrentRefreshes} between 1 and 10000`),
  ],
);

export const coverageTargets = pgTable(
  "coverage_targets",
  {
    agentId: uuid("agent_id")
      .notNull()
      .references(() => agents.agentId, { onDelete: "cascade" }),
    nodeId: uuid("node_id").notNull(),
    targetDocumentCount: integer("target_document_count").notNull(),
  },
  (t) => [
    primaryKey({ name: "coverage_targets_pkey", columns: [t.agentId, t.nodeId] }),
    check("coverage_targets_target_positive", sql`${t.targetDocumentCount} >= 1`),
  ],
);

export const TASK_STATUSES = ["pending", "running", "completed", "failed", "cancelled", "timeout"] as const;
export const TASK_PRIORITIES = ["high", "medium", "low"] as const;

export const backgroundTasks = pgTable(
  "background_tasks",
  {
    taskId: text("task_id").primaryKey(),
    agentId: uuid("agent_id")
      .notNull()
      .references(() => agents.agentId, { onDelete: "cascade" }),
    taskType: text("task_type").notNull().default("coverage_refresh"),
    status: text("status").notNull().default("pending"),
    priority: text("priority").notNull().default("medium"),
    createdAt: tstz("created_at").notNull().defaultNow(),
    startedAt: tstz("started_at"),
    completedAt: tstz("completed_at"),
    result: jsonb("result"),
    error: text("error"),
    webhookUrl: text("webhook_url"),
    webhookRetryCount: integer("webhook_retry_count").notNull().default(0),
    cancellationRequested: boolean("cancellation_requested").notNull().default(false),
    queuePosition: integer("queue_position"),
    progressPercentage: integer("progress_percentage").notNull().default(0),
    estimatedCompletionAt: tstz("estimated_completion_at"),
    attempt: integer("attempt").notNull().default(0),
    maxAttempts: integer("max_attempts").notNull().default(3),
    leaseToken: uuid("lease_token"),
    leaseOwner: text("lease_owner"),
    leaseExpiresAt: tstz("lease_expires_at"),
    timeoutMs: integer("timeout_ms").notNull().default(300000),
    /**
     * Whether this task holds its agent's deduplication slot: the partial unique index below lets
     * at most one pending task per agent have it, so concurrent unforced requests converge on one
     * task. False for ?force=true tasks and for retried tasks (a retry must never collide with a
     * newer request). An unforced request returns the agent's oldest pending task whatever this
     * flag (src/db/tasks/enqueue.ts); it only creates one, with the flag, when none is pending.
     */
    dedupe: boolean("dedupe").notNull().default(true),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
    /** The task this one retries (POST /tasks/{id}/retry); unique: a task is retried at most once. */
    retryOf: text("retry_of"),
    /** The schedule that enqueued this task, if any. */
    scheduleId: uuid("schedule_id"),
  },
  (t) => [
    // Partial: the tasks that are no retry (nearly all) have no entry to write at each status change.
    uniqueIndex("background_tasks_retry_of_key")
      .on(t.retryOf)
      .where(sql`${t.retryOf} is not null`),
    // The task list pages newest first with a (created_at, task_id) keyset cursor.
    index("background_tasks_created_task_idx").on(t.createdAt.desc(), t.taskId.desc()),
    // No index on status, agent_id or created_at alone: (status, completed_at), (agent_id, status)
    // and (created_at, task_id) serve those lookups, and every index costs each task's two
    // status changes (claim, end) an entry of its own: the engine's largest cost per task.
    index("background_tasks_agent_status_idx").on(t.agentId, t.status),
    // At most one unforced pending refresh per agent: concurrent requests converge on one task.
    uniqueIndex("background_tasks_one_pending_per_agent")
      .on(t.agentId)
      .where(sql`${t.status} = 'pending' and ${t.dedupe}`),
    // The reaper finds expired leases without scanning finished tasks.
    index("background_tasks_running_lease_idx")
      .on(t.leaseExpiresAt)
      .where(sql`${t.status} = 'running'`),
    // The reconciler and the retention job look at pending and at finished tasks by time.
    // Partial on the terminal statuses: a pending or running task writes no entry here.
    index("background_tasks_status_completed_idx")
      .on(t.status, t.completedAt)
      .where(sql`${t.status} in ('completed', 'failed', 'cancelled', 'timeout')`),
    // The reconciler pages through pending tasks oldest first with a (created_at, task_id) keyset
    // cursor: each page is an index range read, never a sort of every pending task. created_at
    // never changes, so this index does not stop progress writes from being HOT updates.
    index("background_tasks_pending_created_idx")
      .on(t.createdAt, t.taskId)
      .where(sql`${t.status} = 'pending'`),
    check(
      "background_tasks_status_values",
      sql`${t.status} in ('pending', 'running', 'completed', 'failed', 'cancelled', 'timeout')`,
    ),
    check("background_tasks_priority_values", sql`${t.priority} in ('high', 'medium', 'low')`),
    check("background_tasks_task_type_values", sql`${t.taskType} in ('coverage_refresh')`),
    check(
      "background_tasks_progress_range",
      sql`${t.progressPercentage} >= 0 and ${t.progressPercentage} <= 100`,
    ),
    check("background_tasks_attempt_range", sql`${t.attempt} >= 0 and ${t.maxAttempts} >= 1`),
    check("background_tasks_webhook_retry_nonnegative", sql`${t.webhookRetryCount} >= 0`),
    check("background_tasks_timeout_positive", sql`${t.timeoutMs} > 0`),
  ],
);

/**
 * One refresh schedule per agent: a cron expression (with its time zone) or a fixed interval.
 * Supervisors enqueue each due slot exactly once with a compare-and-set on next_run_at.
 */
export const agentSchedules = pgTable(
  "agent_schedules",
  {
    scheduleId: uuid("schedule_id").primaryKey().defaultRandom(),
    agentId: uuid("agent_id")
      .notNull()
      .unique("agent_schedules_agent_id_key")
      .references(() => agents.agentId, { onDelete: "cascade" }),
    cron: text("cron"),
    everySeconds: integer("every_seconds"),
    timezone: text("timezone").notNull().default("UTC"),
    priority: text("priority").notNull().default("medium"),
    webhookUrl: text("webhook_url"),
    enabled: boolean("enabled").notNull().default(true),
    nextRunAt: tstz("next_run_at"),
    lastRunAt: tstz("last_run_at"),
    createdAt: tstz("created_at").notNull().defaultNow(),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    // The due-slot scan: enabled schedules by next_run_at.
    index("agent_schedules_due_idx")
      .on(t.nextRunAt)
      .where(sql`${t.enabled}`),
    check("agent_schedules_one_kind", sql`(${t.cron} is null) <> (${t.everySeconds} is null)`),
    check("agent_schedules_every_positive", sql`${t.everySeconds} is null or ${t.everySeconds} >= 1`),
    check("agent_schedules_priority_values", sql`${t.priority} in ('high', 'medium', 'low')`),
  ],
);

export const coverageHistory = pgTable(
  "coverage_history",
  {
    historyId: bigserial("history_id", { mode: "number" }).primaryKey(),
    agentId: uuid("agent_id")
      .notNull()
      .references(() => agents.agentId, { onDelete: "cascade" }),
    timestamp: tstz("timestamp").notNull().defaultNow(),
    overallCoverage: doublePrecision("overall_coverage").notNull(),
    totalDocuments: integer("total_documents").notNull(),
    totalChunks: integer("total_chunks").notNull(),
    version: text("version").notNull(),
    /** The task that wrote this row, if any: a unique key makes completion idempotent. */
    taskId: text("task_id").unique("coverage_history_task_id_key"),
  },
  (t) => [
    index("coverage_history_agent_id_idx").on(t.agentId),
    index("coverage_history_timestamp_idx").on(t.timestamp.desc()),
    index("coverage_history_agent_timestamp_idx").on(t.agentId, t.timestamp.desc()),
    check(
      "coverage_history_overall_range",
      sql`${t.overallCoverage} >= 0 and ${t.overallCoverage} <= 100`,
    ),
    check("coverage_history_total_documents_nonnegative", sql`${t.totalDocuments} >= 0`),
    check("coverage_history_total_chunks_nonnegative", sql`${t.totalChunks} >= 0`),
  ],
);

/**
 * The earlier attempts of a task: one row per attempt that ended without ending the task (it went
 * back to pending: a retry, a lapsed lease, a hand-back). background_tasks keeps only the latest
 * attempt's started_at; this keeps the others for the task's timeline (GET /tasks/{id} attempts).
 * Written in the same statement that requeues the task (src/db/tasks/attempts.ts), never for a
 * task that ends on its first attempt. Keyed by a serial id, not (task_id, attempt): a refunded
 * attempt (a shutdown's hand-back) gives its number back, so the next claim reuses it.
 */
export const taskAttempts = pgTable(
  "task_attempts",
  {
    taskAttemptId: bigserial("task_attempt_id", { mode: "number" }).primaryKey(),
    taskId: text("task_id")
      .notNull()
      .references(() => backgroundTasks.taskId, { onDelete: "cascade" }),
    attempt: integer("attempt").notNull(),
    startedAt: tstz("started_at"),
    endedAt: tstz("ended_at").notNull().defaultNow(),
    outcome: text("outcome").notNull(),
    refunded: boolean("refunded").notNull().default(false),
  },
  (t) => [
    // GET /tasks/{id} reads a task's attempts oldest first: one range of this index.
    index("task_attempts_task_id_idx").on(t.taskId, t.taskAttemptId),
    check("task_attempts_attempt_positive", sql`${t.attempt} >= 1`),
  ],
);

export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    deliveryAttemptId: bigserial("delivery_attempt_id", { mode: "number" }).primaryKey(),
    taskId: text("task_id")
      .notNull()
      .references(() => backgroundTasks.taskId, { onDelete: "cascade" }),
    url: text("url").notNull(),
    attempt: integer("attempt").notNull(),
    statusCode: integer("status_code"),
    error: text("error"),
    durationMs: integer("duration_ms"),
    nextAttemptAt: tstz("next_attempt_at"),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [
    index("webhook_deliveries_task_id_idx").on(t.taskId, t.attempt),
    check("webhook_deliveries_attempt_positive", sql`${t.attempt} >= 1`),
    check("webhook_deliveries_duration_nonnegative", sql`${t.durationMs} is null or ${t.durationMs} >= 0`),
  ],
);

/**
 * The webhook outbox: one row per task that ended with a webhook_url, written
 * by a trigger in the transaction that ends the task (drizzle/0004), so no
 * terminal status can be lost between the task ending and its delivery.
 * Senders claim due rows with a time-limited lock; `webhook_id` is the
 * Standard Webhooks message id, the same for every attempt.
 */
export const webhookOutbox = pgTable(
  "webhook_outbox",
  {
    taskId: text("task_id")
      .primaryKey()
      .references(() => backgroundTasks.taskId, { onDelete: "cascade" }),
    webhookId: text("webhook_id").notNull(),
    url: text("url").notNull(),
    payload: jsonb("payload").notNull(),
    status: text("status").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    /** Attempts since the delivery was (re)started: its retry budget is counted on these. */
    roundAttempts: integer("round_attempts").notNull().default(0),
    nextAttemptAt: tstz("next_attempt_at").notNull().defaultNow(),
    lockedBy: text("locked_by"),
    lockedUntil: tstz("locked_until"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    createdAt: tstz("created_at").notNull().defaultNow(),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
    deliveredAt: tstz("delivered_at"),
    /** Why a dead delivery is dead: exhausted (schedule spent), gone (410), rejected (other 4xx, 3xx), unsafe_url. */
    deadReason: text("dead_reason"),
  },
  (t) => [
    unique("webhook_outbox_webhook_id_key").on(t.webhookId),
    // Senders look only at deliveries still to make, by due time.
    index("webhook_outbox_due_idx")
      .on(t.nextAttemptAt)
      .where(sql`${t.status} = 'pending'`),
    // GET /webhooks/deliveries?status= pages newest first, and bulk redelivery oldest first, on (created_at, task_id).
    index("webhook_outbox_status_created_idx").on(t.status, t.createdAt, t.taskId),
    check("webhook_outbox_status_values", sql`${t.status} in ('pending', 'delivered', 'dead')`),
    check("webhook_outbox_attempts_nonnegative", sql`${t.attempts} >= 0 and ${t.roundAttempts} >= 0`),
    // Values only: a release from before dead_reason (rolled back to) writes dead rows without one.
    check("webhook_outbox_dead_reason_values", sql`${t.deadReason} is null or ${t.deadReason} in ('exhausted', 'gone', 'rejected', 'unsafe_url')`),
  ],
);

/**
 * Webhook URLs that answered 410 Gone: the receiver wants no more webhooks there, so no
 * delivery to this exact URL is attempted again (it ends dead, reason gone) until an operator
 * redelivers one of its deliveries by task id, which removes the mark. No foreign key: the
 * mark outlives the task whose delivery got the 410 (retention deletes tasks).
 */
export const webhookGoneUrls = pgTable("webhook_gone_urls", {
  url: text("url").primaryKey(),
  /** The delivery that got the 410. */
  taskId: text("task_id").notNull(),
  webhookId: text("webhook_id").notNull(),
  markedAt: tstz("marked_at").notNull().defaultNow(),
});

export const apiKeys = pgTable(
  "api_keys",
  {
    keyId: uuid("key_id").primaryKey(),
    name: text("name").notNull(),
    /** SHA-256 of the whole key; the key itself is shown once and never stored. */
    keyHash: text("key_hash").notNull(),
    createdAt: tstz("created_at").notNull().defaultNow(),
    revokedAt: tstz("revoked_at"),
    lastUsedAt: tstz("last_used_at"),
  },
  (t) => [
    unique("api_keys_key_hash_key").on(t.keyHash),
    check("api_keys_name_not_blank", sql`length(${t.name}) between 1 and 200`),
  ],
);
