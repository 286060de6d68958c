/**
 * An agent's refresh schedule: PUT (create or replace), GET, DELETE on /agents/{id}/schedule.
 * The supervisors' schedulers fire it (src/schedules/scheduler.ts).
 */
import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors, Uuid } from "../common.ts";
import { ErrorBody } from "../errors.ts";
import { Schedule, ScheduleIn } from "./model.ts";
import { agentExists, deleteSchedule, getSchedule, upsertSchedule } from "../../db/schedules.ts";
import { isForeignKeyViolation } from "../../db/errors.ts";
import { AppError, notFound } from "../../core/errors.ts";
import { assertWebhookUrlAccepted } from "../../tasks/service.ts";
import { canonicalTimezone, checkCron, nextRunAfter, ScheduleInputError } from "../../schedules/timing.ts";

const Params = t.Object({ agent_id: Uuid });

/** 400 validation_error naming the body field, in the shape of Elysia's own validation errors. */
const invalid = (field: string, message: string, extra: Record<string, unknown> = {}) =>
  new AppError("validation_error", `invalid body: /${field} ${message}`, { on: "body", issues: [{ path: `/${field}`, message }], ...extra });

function asInputError(error: unknown): never {
  if (error instanceof ScheduleInputError)
    throw invalid(error.field, error.message, error.cronField ? { cron_field: error.cronField } : {});
  throw error;
}

/** 404 for an unknown agent, or for a known one without a schedule (the message says which). */
async function missing(deps: AppDeps, agentId: string): Promise<never> {
  if (!(await agentExists(deps.database.db, agentId))) throw notFound("agent", agentId);
  throw new AppError("not_found", `agent ${agentId} has no schedule`, { id: agentId });
}

export const scheduleRoutes = (deps: AppDeps) => {
  const db = deps.database.db;
  return new Elysia({ name: "agentq.schedules", tags: ["schedules"] })
    .put(
      "/agents/:agent_id/schedule",
      async ({ params, body, status }) => {
        const cron = body.cron ?? null;
        const everySeconds = body.every_seconds ?? null;
        if ((cron === null) === (everySeconds === null))
          throw new AppError("validation_error", "invalid body: exactly one of cron and every_seconds is required", {
            on: "body",
            issues: [
              { path: "/cron", message: cron === null ? "cron or every_seconds is required" : "not allowed together with every_seconds" },
              { path: "/every_seconds", message: cron === null ? "cron or every_seconds is required" : "not allowed together with cron" },
            ],
          });
        const now = new Date();
        let timezone: string;
        try {
          timezone = canonicalTimezone(body.timezone ?? "UTC");
          if (cron !== null) checkCron(cron, timezone, now);
        } catch (error) {
          asInputError(error);
        }
        if (body.webhook_url !== undefined) await assertWebhookUrlAccepted(deps.config, body.webhook_url);
        const enabled = body.enabled ?? true;
        const timing = { cron, every_seconds: everySeconds, timezone };
        try {
          const { schedule, created } = await upsertSchedule(db, params.agent_id, {
            ...timing,
            priority: body.priority ?? "medium",
            webhook_url: body.webhook_url ?? null,
            enabled,
            next_run_at: enabled ? nextRunAfter(timing, now) : null,
          });
          return status(created ? 201 : 200, schedule);
        } catch (error) {
          // The agent foreign key tells us the agent does not exist: no lookup beforehand.
          if (isForeignKeyViolation(error)) throw notFound("agent", params.agent_id);
          throw error;
        }
      },
      {
        params: Params,
        body: ScheduleIn,
        response: { 200: Schedule, 201: Schedule, ...authErrors, 404: ErrorBody },
        detail: {
          summary: "Create or replace the agent's refresh schedule",
          description:
            "Exactly one of cron (read in timezone, default UTC) and every_seconds (at least 1). 201 when created, 200 when it replaced the agent's schedule (same schedule_id; fields not sent take their defaults). A replacement that keeps the timing (cron, every_seconds and, for cron, timezone) and stays enabled keeps next_run_at. Each due slot enqueues one coverage refresh with this schedule's priority and webhook_url, whatever the number of supervisors; an agent that already has a pending refresh gets no second one (the slot joins it). Slots missed while no supervisor ran give one catch-up run. 400 validation_error naming the field: cron that does not parse (and which part of it) or never matches, every_seconds below 1, an unknown timezone, both or neither of cron and every_seconds. 404 for an unknown agent.",
        },
      },
    )
    .get(
      "/agents/:agent_id/schedule",
      async ({ params }) => (await getSchedule(db, params.agent_id)) ?? missing(deps, params.agent_id),
      {
        params: Params,
        response: { 200: Schedule, ...authErrors, 404: ErrorBody },
        detail: { summary: "The agent's refresh schedule, with next_run_at and last_run_at", description: "404 for an unknown agent or an agent without a schedule." },
      },
    )
    .delete(
      "/agents/:agent_id/schedule",
      async ({ params, status }) => {
        if (!(await deleteSchedule(db, params.agent_id))) await missing(deps, params.agent_id);
        return status(204, undefined);
      },
      {
        params: Params,
        response: { 204: t.Void(), ...authErrors, 404: ErrorBody },
        detail: {
          summary: "Delete the agent's refresh schedule",
          description: "No slot fires after it; tasks it enqueued keep running and keep their schedule_id. 404 for an unknown agent or an agent without a schedule.",
        },
      },
    );
};
