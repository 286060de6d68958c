/**
 * Webhook deliveries across tasks: the list (dead ones by agent, typically) and their bulk
 * redelivery. One task's delivery and its single redelivery are under /tasks/{task_id}/webhook
 * (src/api/tasks/index.ts). Same X-API-Key as every /api/v1 route, same error shape.
 */
import { Elysia } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors } from "../common.ts";
import { decodeCursor, encodeCursor } from "../tasks/cursor.ts";
import { assertTimestamps } from "../timestamps.ts";
import { listDeliveries, restartDeliveries } from "../../db/webhooks.ts";
import { DeliveryList, DeliveryListQuery, RedeliverBody, RedeliverResult } from "./model.ts";

const DEFAULT_LIMIT = 50;

export const webhookRoutes = (deps: AppDeps) => {
  const db = deps.database.db;
  return new Elysia({ name: "agentq.webhooks", tags: ["webhooks"] })
    .get(
      "/webhooks/deliveries",
      async ({ query }) => {
        const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
        const { deliveries, next } = await listDeliveries(
          db,
          { statuses: query.status ? [...new Set(query.status)] : undefined, agentId: query.agent_id },
          { limit: query.limit ?? DEFAULT_LIMIT, after },
        );
        return { deliveries, next_cursor: next ? encodeCursor(next) : null };
      },
      {
        query: DeliveryListQuery,
        response: { 200: DeliveryList, ...authErrors },
        detail: {
          summary: "List webhook deliveries, newest first, by status and agent, with a cursor",
          description:
            "Filters combine (and): status (repeatable: pending, delivered, dead), agent_id. limit is 1 to 100 (default 50). next_cursor is opaque; pass it back as cursor, with the same filters, for the next page; it is null on the last page. Paging is by position (keyset on created_at, task_id: when the task ended), so deliveries recorded meanwhile never shift a later page. A cursor this API did not issue is 400. dead_reason says why a dead delivery is dead; GET /tasks/{task_id}/webhook has its attempts.",
        },
      },
    )
    .post(
      "/webhooks/deliveries/redeliver",
      async ({ body, status }) => {
        assertTimestamps("body", { created_after: body.created_after, created_before: body.created_before });
        const max = deps.config.bulkMaxTasks;
        const { taskIds, more } = await restartDeliveries(
          db,
          body.status,
          {
            agentId: body.agent_id,
            taskIds: body.task_ids ? [...new Set(body.task_ids)] : undefined,
            createdAfter: body.created_after,
            createdBefore: body.created_before,
          },
          max,
        );
        return status(202, { task_ids: taskIds, redelivered: taskIds.length, has_more: more, max_per_call: max });
      },
      {
        body: RedeliverBody,
        response: { 202: RedeliverResult, ...authErrors },
        detail: {
          summary: "Redeliver every matching dead (or delivered) webhook",
          description:
            "Restarts the deliveries in the given status that match agent_id, task_ids and the created_at range (created_after inclusive, created_before exclusive; created_at is when the task ended), oldest first, at most AGENTQ_BULK_MAX_TASKS (default 1000) per call, in one statement. Each starts again from the first step of the retry schedule with the same webhook-id, as POST /tasks/{task_id}/webhook/redeliver does one. Deliveries to a URL that answered 410 Gone are left dead: redeliver one of them by task id to re-enable that URL. has_more says more matched: call again for the next ones (a restarted delivery is pending, so it is not matched twice).",
        },
      },
    );
};
