import { t } from "elysia";
import { Timestamp, Uuid } from "../common.ts";

const PriorityT = t.Union([t.Literal("high"), t.Literal("medium"), t.Literal("low")], { description: "Queue priority of the scheduled tasks; default medium" });

/** Longest fixed interval: a year (use cron for anything rarer). */
export const MAX_EVERY_SECONDS = 366 * 24 * 3600;

export const ScheduleIn = t.Object(
  {
    cron: t.Optional(
      t.String({
        minLength: 1,
        maxLength: 200,
        pattern: "^[ -~]+$",
        description:
          "Cron expression, read in `timezone`: five fields (minute hour day-of-month month day-of-week, e.g. `0 3 * * *`), or six with seconds first; croner's nicknames (@hourly, @daily, @weekly, @monthly, @yearly) too. Exactly one of cron and every_seconds.",
      }),
    ),
    every_seconds: t.Optional(
      t.Integer({
        minimum: 1,
        maximum: MAX_EVERY_SECONDS,
        description: "Fixed interval in seconds (at least 1): the first run is this long after the PUT, then every interval after it. Exactly one of cron and every_seconds.",
      }),
    ),
    timezone: t.Optional(
      t.String({
        minLength: 1,
        maxLength: 64,
        pattern: "^[A-Za-z0-9_+:/-]+$",
        description: "IANA time zone the cron expression is read in (e.g. Europe/Paris); default UTC. Answered in its canonical spelling.",
      }),
    ),
    priority: t.Optional(PriorityT),
    webhook_url: t.Optional(
      t.String({
        maxLength: 2048,
        pattern: "^https?://[^\\s\\u0000-\\u001f\\u007f]+$",
        description: "Each scheduled task POSTs its terminal status here, signed (docs/webhooks.md). https only, public addresses only.",
      }),
    ),
    enabled: t.Optional(t.Boolean({ description: "false keeps the schedule but fires nothing (next_run_at null); default true" })),
  },
  { additionalProperties: false },
);

export const Schedule = t.Object({
  schedule_id: Uuid,
  agent_id: Uuid,
  cron: t.Nullable(t.String()),
  every_seconds: t.Nullable(t.Integer()),
  timezone: t.String(),
  priority: PriorityT,
  webhook_url: t.Nullable(t.String()),
  enabled: t.Boolean(),
  next_run_at: t.Nullable(Timestamp),
  last_run_at: t.Nullable(Timestamp),
  created_at: Timestamp,
  updated_at: Timestamp,
});
