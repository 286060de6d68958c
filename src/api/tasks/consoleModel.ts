/** Schemas of the operator console's task routes: list, stats, retries, bulk refresh. */
import { t } from "elysia";
import { Timestamp, Uuid } from "../common.ts";
import { PriorityT, StatusT, Task, TaskId, WebhookUrl } from "./model.ts";
import { CURSOR_MAX_LENGTH } from "./cursor.ts";

const DateBound = (description: string) =>
  t.String({ format: "date-time", maxLength: 64, description: `${description} (RFC 3339 with a time zone; a calendar date in years 0001-9999)` });

export const TaskSummary = t.Omit(Task, ["queue_position", "estimated_completion_at", "result"], {
  description: "A task as stored, without its result (GET /tasks/{task_id} has the result, queue position and estimate)",
});

export const TaskListQuery = t.Object(
  {
    status: t.Optional(t.Array(StatusT, { minItems: 1, maxItems: 6, description: "Only these statuses; repeat the parameter (status=failed&status=timeout) or separate by commas" })),
    agent_id: t.Optional(Uuid),
    priority: t.Optional(PriorityT),
    created_after: t.Optional(DateBound("Only tasks created at or after this instant")),
    created_before: t.Optional(DateBound("Only tasks created before this instant")),
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50, description: "Tasks per page (at most 100)" })),
    cursor: t.Optional(
      t.String({
        minLength: 1,
        maxLength: CURSOR_MAX_LENGTH,
        description: "next_cursor of the previous page, unchanged (opaque); use it with the same filters. Anything else is 400",
      }),
    ),
  },
  { additionalProperties: false },
);

export const TaskList = t.Object({
  tasks: t.Array(TaskSummary, { description: "Newest first (created_at, then task_id, descending)" }),
  next_cursor: t.Nullable(t.String({ description: "Pass as cursor for the next page; null on the last page" })),
});

const PriorityCounts = t.Object({
  high: t.Integer({ minimum: 0 }),
  medium: t.Integer({ minimum: 0 }),
  low: t.Integer({ minimum: 0 }),
  total: t.Integer({ minimum: 0 }),
});

export const TaskStats = t.Object({
  live: t.Object(
    {
      total: t.Integer({ minimum: 0 }),
      by_status: t.Object({ pending: PriorityCounts, running: PriorityCounts }),
    },
    { description: "Every pending and running task, by status and priority (exact)" },
  ),
  last_hour: t.Object(
    {
      since: Timestamp,
      window_seconds: t.Integer(),
      finished: t.Integer({ minimum: 0, description: "Tasks that ended in the window, whatever their ending" }),
      by_status: t.Object({ completed: PriorityCounts, failed: PriorityCounts, cancelled: PriorityCounts, timeout: PriorityCounts }),
    },
    { description: "Tasks that ended (completed_at) in the last hour, by status and priority. Terminal tasks are counted only in this window, never over the whole table" },
  ),
  oldest_pending: t.Nullable(
    t.Object({
      task_id: TaskId,
      created_at: Timestamp,
      age_seconds: t.Number({ minimum: 0 }),
    }),
    { description: "The pending task created first; null when nothing is pending" },
  ),
  calculated_at: Timestamp,
});

const RetryableStatusT = t.Union([t.Literal("failed"), t.Literal("timeout"), t.Literal("cancelled")]);

export const BulkRetryBody = t.Object(
  {
    status: t.Array(RetryableStatusT, { minItems: 1, maxItems: 3, description: "Retry tasks in these statuses (failed, timeout, cancelled)" }),
    agent_id: t.Optional(Uuid),
    created_after: t.Optional(DateBound("Only tasks created at or after this instant")),
    created_before: t.Optional(DateBound("Only tasks created before this instant")),
  },
  { additionalProperties: false },
);

export const BulkRetryResult = t.Object({
  tasks: t.Array(
    t.Object({
      task_id: TaskId,
      retry_of: TaskId,
      agent_id: Uuid,
      priority: PriorityT,
    }),
    { description: "The new tasks, each with the task it retries" },
  ),
  retried: t.Integer({ minimum: 0 }),
  has_more: t.Boolean({ description: "More matching tasks than the maximum per call: call again to retry the next ones" }),
  max_per_call: t.Integer({ description: "AGENTQ_BULK_MAX_TASKS" }),
});

export const BulkRefreshBody = t.Object(
  {
    agent_ids: t.Optional(t.Array(Uuid, { minItems: 1, description: "The agents to refresh (at most AGENTQ_BULK_MAX_AGENTS, default 1000); duplicates count once" })),
    all: t.Optional(t.Literal(true, { description: "Refresh every agent (refused when there are more than AGENTQ_BULK_MAX_AGENTS)" })),
    priority: t.Optional(PriorityT),
    webhook_url: t.Optional(WebhookUrl),
  },
  { additionalProperties: false, description: "Exactly one of agent_ids and all" },
);

export const BulkRefreshResult = t.Object({
  tasks: t.Array(
    t.Composite([TaskSummary, t.Object({ created: t.Boolean({ description: "false: the agent's pending refresh, returned instead of a second one" }) })]),
    { description: "One per known agent, in the order asked" },
  ),
  created: t.Integer({ minimum: 0, description: "New tasks among them" }),
  unknown_agent_ids: t.Array(Uuid, { description: "Asked ids that name no agent; the others were refreshed" }),
});
