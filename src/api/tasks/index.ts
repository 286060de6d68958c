import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors, Uuid } from "../common.ts";
import { ErrorBody } from "../errors.ts";
import { Coverage } from "../agents/model.ts";
import { History, HistoryQuery, RefreshBody, RefreshQuery, Task, TaskDetail, TaskId, WebhookDelivery } from "./model.ts";
import { requireAgent } from "../../db/agents.ts";
import { insertCoverageHistory, storeAgentCoverage } from "../../db/coverage.ts";
import { getTask } from "../../db/tasks/records.ts";
import { listCoverageHistory } from "../../db/coverageHistory.ts";
import { getDelivery, restartDelivery } from "../../db/webhooks.ts";
import { isTerminal } from "../../core/tasks.ts";
import { measureCoverage } from "../../coverage/meter.ts";
import { TaskService } from "../../tasks/service.ts";
import { AppError, notFound } from "../../core/errors.ts";
import { REQUEST_ID_HEADER } from "../../metrics/http.ts";
import { assertTimestamps } from "../timestamps.ts";

export const taskRoutes = (deps: AppDeps) => {
  const db = deps.database.db;
  const tasks = new TaskService(deps);
  return new Elysia({ name: "agentq.tasks", tags: ["tasks"] })
    .post(
      "/agents/:agent_id/coverage/refresh",
      async ({ params, query, body, status, set }) => {
        // Elysia does not validate an optional body that is not an object ([], 1, "x", null): refuse it here.
        if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body)))
          throw new AppError("validation_error", "invalid body: Expected object", { on: "body", issues: [{ path: "/", message: "Expected object" }] });
        if (query.background === false) {
          const agent = await requireAgent(db, params.agent_id);
          const result = await measureCoverage(db, agent, deps.config);
          await db.transaction(async (tx) => {
            const at = new Date(result.calculated_at);
            await insertCoverageHistory(tx, { agentId: agent.agent_id, report: result, version: result.version, at });
            await storeAgentCoverage(tx, agent.agent_id, result, at);
          });
          return status(200, result);
        }
        const { task } = await tasks.enqueueRefresh(params.agent_id, {
          priority: body?.priority ?? "medium",
          webhookUrl: body?.webhook_url ?? null,
          force: query.force ?? false,
          // Set by the request hook (src/metrics/http.ts): ties the task_enqueued log line to its request.
          requestId: set.headers[REQUEST_ID_HEADER] as string | undefined,
        });
        return status(202, task);
      },
      {
        params: t.Object({ agent_id: Uuid }),
        query: RefreshQuery,
        body: RefreshBody,
        response: { 200: Coverage, 202: Task, ...authErrors, 404: ErrorBody },
        detail: {
          summary: "Refresh the agent's coverage, in the background (202) or now (200)",
          description:
            "background=true (default) records a pending task and dispatches it to the queue of its priority. If the agent already has a pending refresh, that task is returned instead of a second one; force=true always creates a new task. background=false computes now, stores the figures on the agent and writes a history row. A webhook_url is checked at once (https only, public addresses only; see docs/webhooks.md): an unsafe one answers 400 with the reason. When background refreshes are turned off (AGENTQ_BACKGROUND_REFRESH_ENABLED=false), background=true answers 503 background_refresh_disabled and records nothing; background=false still works.",
        },
      },
    )
    .get("/agents/:agent_id/coverage/status/:task_id", async ({ params }) => tasks.view(params.task_id, params.agent_id), {
      params: t.Object({ agent_id: Uuid, task_id: TaskId }),
      response: { 200: TaskDetail, ...authErrors, 404: ErrorBody },
      detail: { summary: "A task of this agent, with progress, queue position, completion estimate and earlier attempts" },
    })
    .get("/tasks/:task_id", async ({ params }) => tasks.view(params.task_id), {
      params: t.Object({ task_id: TaskId }),
      response: { 200: TaskDetail, ...authErrors, 404: ErrorBody },
      detail: {
        summary: "A task, with progress, queue position, completion estimate and earlier attempts",
        description:
          "attempts lists the attempts that ended without ending the task (a lapsed lease, a crashed worker thread, a lost database connection, a hand-back on shutdown), oldest first, each with its start, end and outcome; the current or last attempt is started_at / completed_at. Empty for a task that ran once.",
      },
    })
    .delete(
      "/tasks/:task_id",
      async ({ params, status }) => {
        if (!(await tasks.cancel(params.task_id))) throw notFound("task", params.task_id);
        return status(204, undefined);
      },
      {
        params: t.Object({ task_id: TaskId }),
        response: { 204: t.Void(), ...authErrors, 404: ErrorBody },
        detail: {
          summary: "Cancel a task",
          description:
            "Pending: removed from the queue and cancelled at once. Running: its worker is told at once (pub/sub) and the task ends cancelled. Terminal: unchanged. Always 204 for a known task.",
        },
      },
    )
    .get(
      "/tasks/:task_id/webhook",
      async ({ params }) => {
        const delivery = await getDelivery(db, params.task_id);
        if (delivery) return delivery;
        throw (await getTask(db, params.task_id)) ? notFound("webhook delivery of task", params.task_id) : notFound("task", params.task_id);
      },
      {
        params: t.Object({ task_id: TaskId }),
        response: { 200: WebhookDelivery, ...authErrors, 404: ErrorBody },
        detail: {
          summary: "The webhook delivery of a task, with every attempt",
          description: "404 when the task is unknown, has no webhook_url, or has not ended yet (the delivery is recorded when it ends).",
        },
      },
    )
    .post(
      "/tasks/:task_id/webhook/redeliver",
      async ({ params, status }) => {
        const task = await getTask(db, params.task_id);
        if (!task) throw notFound("task", params.task_id);
        if (task.webhook_url === null) throw new AppError("conflict", `task ${params.task_id} has no webhook_url`);
        if (!isTerminal(task.status))
          throw new AppError("conflict", `task ${params.task_id} is ${task.status}; its webhook is sent when it ends`);
        await restartDelivery(db, params.task_id);
        return status(202, (await getDelivery(db, params.task_id))!);
      },
      {
        params: t.Object({ task_id: TaskId }),
        response: { 202: WebhookDelivery, ...authErrors, 404: ErrorBody, 409: ErrorBody },
        detail: {
          summary: "Send a task's webhook again",
          description:
            "Restarts a dead (or delivered) delivery from the first step of the retry schedule, with the same webhook-id; a delivery still in progress is left as it is. If its URL answered 410 Gone (dead_reason gone), this re-enables the URL for every delivery (POST /webhooks/deliveries/redeliver never does). 409 when the task has no webhook_url or has not ended.",
        },
      },
    )
    .get(
      "/agents/:agent_id/coverage/history",
      async ({ params, query }) => {
        // Before any query: PostgreSQL refuses impossible dates with an error, not an empty range.
        assertTimestamps("query", { start_date: query.start_date, end_date: query.end_date });
        await requireAgent(db, params.agent_id);
        const { history, total } = await listCoverageHistory(db, params.agent_id, {
          start: query.start_date,
          end: query.end_date,
          limit: query.limit ?? 100,
          offset: query.offset ?? 0,
        });
        return {
          agent_id: params.agent_id,
          history,
          start_date: query.start_date ?? null,
          end_date: query.end_date ?? null,
          total_entries: total,
        };
      },
      {
        params: t.Object({ agent_id: Uuid }),
        query: HistoryQuery,
        response: { 200: History, ...authErrors, 404: ErrorBody },
        detail: { summary: "Coverage history, newest first" },
      },
    );
};
