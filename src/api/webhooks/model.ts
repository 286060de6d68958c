/** Schemas of the webhook delivery routes: the list of deliveries and their bulk redelivery. */
import { t } from "elysia";
import { Timestamp, Uuid } from "../common.ts";
import { CURSOR_MAX_LENGTH } from "../tasks/cursor.ts";
import { DeliveryStatusT, TaskId, WebhookDelivery } from "../tasks/model.ts";

/** Most task_ids one bulk redelivery names (AGENTQ_BULK_MAX_TASKS bounds how many it restarts). */
export const REDELIVER_MAX_TASK_IDS = 1000;

const DateBound = (description: string) =>
  t.String({ format: "date-time", maxLength: 64, description: `${description} (RFC 3339 with a time zone; a calendar date in years 0001-9999)` });

export const DeliveryListQuery = t.Object(
  {
    status: t.Optional(
      t.Array(DeliveryStatusT, { minItems: 1, maxItems: 3, description: "Only these statuses; repeat the parameter (status=dead&status=pending) or separate by commas" }),
    ),
    agent_id: t.Optional(Uuid),
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50, description: "Deliveries per page (at most 100)" })),
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

export const DeliverySummary = t.Composite(
  [
    t.Omit(WebhookDelivery, ["attempt_log"]),
    t.Object({
      agent_id: Uuid,
      updated_at: Timestamp,
    }),
  ],
  { description: "A delivery without its attempts (GET /tasks/{task_id}/webhook has them)" },
);

export const DeliveryList = t.Object({
  deliveries: t.Array(DeliverySummary, { description: "Newest first (created_at, then task_id, descending): created_at is when the task ended" }),
  next_cursor: t.Nullable(t.String({ description: "Pass as cursor for the next page; null on the last page" })),
});

export const RedeliverBody = t.Object(
  {
    status: t.Union([t.Literal("dead"), t.Literal("delivered")], { description: "Redeliver deliveries in this status: dead (the usual), or delivered (a replay)" }),
    agent_id: t.Optional(Uuid),
    task_ids: t.Optional(t.Array(TaskId, { minItems: 1, maxItems: REDELIVER_MAX_TASK_IDS, description: `Only the deliveries of these tasks (at most ${REDELIVER_MAX_TASK_IDS})` })),
    created_after: t.Optional(DateBound("Only deliveries of tasks that ended at or after this instant")),
    created_before: t.Optional(DateBound("Only deliveries of tasks that ended before this instant")),
  },
  { additionalProperties: false },
);

export const RedeliverResult = t.Object({
  task_ids: t.Array(TaskId, { description: "The tasks whose deliveries were restarted, oldest first" }),
  redelivered: t.Integer({ minimum: 0 }),
  has_more: t.Boolean({ description: "More matching deliveries than the maximum per call: call again for the next ones" }),
  max_per_call: t.Integer({ description: "AGENTQ_BULK_MAX_TASKS" }),
});
