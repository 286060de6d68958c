/**
 * The operator console's task routes: the task list and counts, retries of ended tasks (one
 * or many), and refreshes of many agents at once. Same X-API-Key as every /api/v1 route (the
 * app's guard), same error shape.
 */
import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors } from "../common.ts";
import { ErrorBody } from "../errors.ts";
import { Task, TaskId } from "./model.ts";
import { BulkRefreshBody, BulkRefreshResult, BulkRetryBody, BulkRetryResult, TaskList, TaskListQuery, TaskStats } from "./consoleModel.ts";
import { decodeCursor, encodeCursor } from "./cursor.ts";
import { listTasks, taskStats } from "../../db/tasks/list.ts";
import { TaskService } from "../../tasks/service.ts";
import { AppError } from "../../core/errors.ts";
import { REQUEST_ID_HEADER } from "../../metrics/http.ts";
import { assertTimestamps } from "../timestamps.ts";

const DEFAULT_LIMIT = 50;

export const taskConsoleRoutes = (deps: AppDeps) => {
  const db = deps.database.db;
  const tasks = new TaskService(deps);
  const requestIdOf = (set: { headers: Record<string, unknown> }) => set.headers[REQUEST_ID_HEADER] as string | undefined;
  return new Elysia({ name: "agentq.tasks.console", tags: ["tasks"] })
    .get(
      "/tasks",
      async ({ query }) => {
        // Before any query: PostgreSQL refuses impossible dates with an error, not an empty range.
        assertTimestamps("query", { created_after: query.created_after, created_before: query.created_before });
        const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
        const { tasks: page, next } = await listTasks(
          db,
          {
            statuses: query.status ? [...new Set(query.status)] : undefined,
            agentId: query.agent_id,
            priority: query.priority,
            createdAfter: query.created_after,
            createdBefore: query.created_before,
          },
          { limit: query.limit ?? DEFAULT_LIMIT, after },
        );
        return { tasks: page, next_cursor: next ? encodeCursor(next) : null };
      },
      {
        query: TaskListQuery,
        response: { 200: TaskList, ...authErrors },
        detail: {
          summary: "List tasks, newest first, with filters and a cursor",
          description:
            "Filters combine (and): status (repeatable), agent_id, priority, created_after (inclusive), created_before (exclusive). limit is 1 to 100 (default 50). next_cursor is opaque; pass it back as cursor, with the same filters, for the next page; it is null on the last page. Paging is by position (keyset on created_at, task_id), so tasks created meanwhile never shift a later page: no task is repeated or skipped. A cursor this API did not issue is 400. Items carry no result, queue_position or estimate: GET /tasks/{task_id} has them.",
        },
      },
    )
    .get("/tasks/stats", async () => taskStats(db), {
      response: { 200: TaskStats, ...authErrors },
      detail: {
        summary: "Task counts: the live backlog, the last hour's endings, the oldest pending task",
        description:
          "live: every pending and running task, by status and priority. last_hour: tasks that ended (completed_at) in the last hour, by status and priority; terminal tasks are counted in this window only, so the answer costs the backlog and the last hour, not the table. oldest_pending: the pending task created first, with its age.",
      },
    })
    .post(
      "/tasks/:task_id/retry",
      async ({ params, status, set }) => status(202, await tasks.retry(params.task_id, { requestId: requestIdOf(set) })),
      {
        params: t.Object({ task_id: TaskId }),
        response: { 202: Task, ...authErrors, 404: ErrorBody, 409: ErrorBody },
        detail: {
          summary: "Retry a failed, timed-out or cancelled task",
          description:
            "Creates and dispatches a new pending task for the same agent, priority and webhook_url (timeout_ms and max_attempts from the current configuration), with retry_of set to this task. A retry is always a new task (like force=true): it is not merged into the agent's pending refresh. 409 when the task is completed, pending or running, or was retried already (a task is retried at most once; of concurrent retries exactly one succeeds). 503 background_refresh_disabled when background refreshes are turned off.",
        },
      },
    )
    .post(
      "/tasks/retry",
      async ({ body, status, set }) => {
        assertTimestamps("body", { created_after: body.created_after, created_before: body.created_before });
        const { tasks: retried, more } = await tasks.retryMany(
          {
            statuses: [...new Set(body.status)],
            agentId: body.agent_id,
            createdAfter: body.created_after,
            createdBefore: body.created_before,
          },
          { requestId: requestIdOf(set) },
        );
        return status(202, {
          tasks: retried.map(({ task_id, retry_of, agent_id, priority }) => ({ task_id, retry_of, agent_id, priority })),
          retried: retried.length,
          has_more: more,
          max_per_call: deps.config.bulkMaxTasks,
        });
      },
      {
        body: BulkRetryBody,
        response: { 202: BulkRetryResult, ...authErrors },
        detail: {
          summary: "Retry every matching failed, timed-out or cancelled task (redrive)",
          description:
            "Retries the tasks in the given statuses (and agent, and created_at range: created_after inclusive, created_before exclusive) that were not retried yet, oldest first, at most AGENTQ_BULK_MAX_TASKS (default 1000) per call, in one statement; each new task is as POST /tasks/{task_id}/retry makes it. has_more says more matched: call again for the next ones (tasks already retried are never retried twice, so repeating the call is safe). 503 background_refresh_disabled when background refreshes are turned off.",
        },
      },
    )
    .post(
      "/coverage/refresh",
      async ({ body, status, set }) => {
        if ((body.agent_ids === undefined) === (body.all === undefined))
          throw new AppError("validation_error", "invalid body: send exactly one of agent_ids and all", {
            on: "body",
            issues: [{ path: "/", message: "send exactly one of agent_ids and all" }],
          });
        const outcome = await tasks.refreshMany(body.all ? "all" : { ids: body.agent_ids! }, {
          priority: body.priority ?? "medium",
          webhookUrl: body.webhook_url ?? null,
          requestId: requestIdOf(set),
        });
        return status(202, {
          tasks: outcome.tasks.map(({ task: { result: _, ...task }, created }) => ({ ...task, created })),
          created: outcome.tasks.filter((t) => t.created).length,
          unknown_agent_ids: outcome.unknownAgentIds,
        });
      },
      {
        body: BulkRefreshBody,
        response: { 202: BulkRefreshResult, ...authErrors },
        detail: {
          summary: "Refresh the coverage of many agents in the background",
          description:
            "One background refresh per agent, as POST /agents/{agent_id}/coverage/refresh makes it: an agent that has a pending refresh gets that task (created false) instead of a second one. Written in one statement and dispatched in one Redis round trip. agent_ids: at most AGENTQ_BULK_MAX_AGENTS (default 1000), else 400 too_many_agents; ids that name no agent are listed in unknown_agent_ids and do not stop the others. all: true refreshes every agent, and is refused with 400 too_many_agents when there are more than AGENTQ_BULK_MAX_AGENTS (send agent_ids in pages instead). priority and webhook_url apply to every new task; webhook_url is checked as for a single refresh. 503 background_refresh_disabled when background refreshes are turned off.",
        },
      },
    );
};
