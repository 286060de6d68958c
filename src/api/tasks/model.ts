import { t } from "elysia";
import { Timestamp, Uuid } from "../common.ts";
import { TASK_ID_PATTERN } from "../../core/tasks.ts";

export const TaskId = t.String({ pattern: TASK_ID_PATTERN, description: "agent-coverage-<uuid v7>" });
export const PriorityT = t.Union([t.Literal("high"), t.Literal("medium"), t.Literal("low")], { description: "Queue priority; default medium" });
export const StatusT = t.Union([
  t.Literal("pending"),
  t.Literal("running"),
  t.Literal("completed"),
  t.Literal("failed"),
  t.Literal("cancelled"),
  t.Literal("timeout"),
]);

export const RefreshQuery = t.Object(
  {
    background: t.Optional(t.Boolean({ default: true, description: "true: enqueue and answer 202; false: compute now and answer 200" })),
    force: t.Optional(t.Boolean({ default: false, description: "true: always a new task, even if the agent has a pending refresh" })),
  },
  { additionalProperties: false },
);

export const WebhookUrl = t.String({
  maxLength: 2048,
  // No whitespace or control characters anywhere; the rest is checked by the SSRF guard (400 unsafe_webhook_url).
  pattern: "^https?://[^\\s\\u0000-\\u001f\\u007f]+$",
  description: "Told about the terminal status by a signed POST (docs/webhooks.md). https only, public addresses only.",
});

export const RefreshBody = t.Optional(
  t.Object(
    {
      webhook_url: t.Optional(WebhookUrl),
      priority: t.Optional(PriorityT),
    },
    { additionalProperties: false },
  ),
);

export const Task = t.Object({
  task_id: TaskId,
  agent_id: Uuid,
  task_type: t.String(),
  status: StatusT,
  priority: PriorityT,
  created_at: Timestamp,
  started_at: t.Nullable(Timestamp),
  completed_at: t.Nullable(Timestamp),
  progress_percentage: t.Integer({ minimum: 0, maximum: 100 }),
  queue_position: t.Nullable(t.Integer({ minimum: 1, description: "Pending only: 1 = next to run, across priorities; null when the task is in no queue (a worker is starting it, or Redis lost it and the reconciler will queue it again)" })),
  estimated_completion_at: t.Nullable(Timestamp),
  result: t.Unknown({ description: "The coverage of a completed task" }),
  error: t.Nullable(t.String()),
  webhook_url: t.Nullable(t.String()),
  webhook_retry_count: t.Integer(),
  cancellation_requested: t.Boolean(),
  attempt: t.Integer({ description: "Claims so far" }),
  max_attempts: t.Integer(),
  timeout_ms: t.Integer(),
  lease_owner: t.Nullable(t.String({ description: "Worker holding the task while it runs" })),
  updated_at: Timestamp,
  retry_of: t.Nullable(t.String({ description: "The failed, timed-out or cancelled task this one retries (POST /tasks/{task_id}/retry)" })),
  schedule_id: t.Nullable(t.String({ format: "uuid", description: "The schedule that enqueued this task" })),
});

export const TaskAttemptT = t.Object({
  attempt: t.Integer({ minimum: 1, description: "Its number (a refunded attempt's number is used again by the next one)" }),
  started_at: t.Nullable(Timestamp),
  ended_at: Timestamp,
  outcome: t.String({ description: "Why it ended without ending the task: lease expired (owner died), worker thread crashed, database connection lost, handed back on shutdown..." }),
  refunded: t.Boolean({ description: "Given back: not counted against max_attempts (the task was interrupted through no fault of its own)" }),
});

/** GET /tasks/{id}: the task with its earlier attempts. */
export const TaskDetail = t.Composite([
  Task,
  t.Object({
    attempts: t.Array(TaskAttemptT, {
      description: "The attempts that ended without ending the task (it went back to the queue), oldest first. The current or last attempt is not listed: it is started_at / completed_at.",
    }),
  }),
]);

export const HistoryQuery = t.Object(
  {
    start_date: t.Optional(t.String({ format: "date-time", maxLength: 64, description: "Inclusive lower bound (RFC 3339 with a time zone; a calendar date in years 0001-9999)" })),
    end_date: t.Optional(t.String({ format: "date-time", maxLength: 64, description: "Inclusive upper bound (RFC 3339 with a time zone; a calendar date in years 0001-9999)" })),
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    offset: t.Optional(t.Integer({ minimum: 0, default: 0 })),
  },
  { additionalProperties: false },
);

export const History = t.Object({
  agent_id: Uuid,
  history: t.Array(
    t.Object({
      timestamp: Timestamp,
      overall_coverage: t.Number(),
      total_documents: t.Integer(),
      total_chunks: t.Integer(),
      version: t.String(),
    }),
  ),
  start_date: t.Nullable(t.String()),
  end_date: t.Nullable(t.String()),
  total_entries: t.Integer(),
});

export const DeliveryStatusT = t.Union([t.Literal("pending"), t.Literal("delivered"), t.Literal("dead")], {
  description: "pending: to send, or a retry waiting for next_attempt_at; delivered: a 2xx; dead: no more attempts (see dead_reason)",
});

export const DeadReasonT = t.Nullable(
  t.Union([t.Literal("exhausted"), t.Literal("gone"), t.Literal("rejected"), t.Literal("unsafe_url")]),
  {
    description:
      "Why a dead delivery is dead (null unless dead): exhausted (every attempt of the retry schedule failed), gone (the receiver answered 410 Gone, now or to an earlier delivery to this URL: it is not attempted again until a delivery to it is redelivered by task id), rejected (another 4xx, or a 3xx: not retried), unsafe_url (the URL resolved to an address that is not public)",
  },
);

export const WebhookDelivery = t.Object(
  {
    task_id: TaskId,
    webhook_id: t.String({ description: "The webhook-id header: the same for every attempt" }),
    url: t.String(),
    status: DeliveryStatusT,
    dead_reason: DeadReasonT,
    attempts: t.Integer({ minimum: 0, description: "Attempts made, across redeliveries" }),
    next_attempt_at: t.Nullable(Timestamp),
    last_status_code: t.Nullable(t.Integer()),
    last_error: t.Nullable(t.String()),
    created_at: Timestamp,
    delivered_at: t.Nullable(Timestamp),
    attempt_log: t.Array(
      t.Object({
        attempt: t.Integer({ minimum: 1 }),
        status_code: t.Nullable(t.Integer()),
        error: t.Nullable(t.String()),
        duration_ms: t.Nullable(t.Integer()),
        attempted_at: Timestamp,
      }),
    ),
  },
  { description: "The webhook delivery of a task that ended with a webhook_url" },
);
