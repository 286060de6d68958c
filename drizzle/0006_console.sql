CREATE TABLE "agent_schedules" (
	"schedule_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"agent_id" uuid NOT NULL,
	"cron" text,
	"every_seconds" integer,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"priority" text DEFAULT 'medium' NOT NULL,
	"webhook_url" text,
	"enabled" boolean DEFAULT true NOT NULL,
	"next_run_at" timestamp with time zone,
	"last_run_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "agent_schedules_agent_id_key" UNIQUE("agent_id"),
	CONSTRAINT "agent_schedules_one_kind" CHECK (("agent_schedules"."cron" is null) <> ("agent_schedules"."every_seconds" is null)),
	CONSTRAINT "agent_schedules_every_positive" CHECK ("agent_schedules"."every_seconds" is null or "agent_schedules"."every_seconds" >= 1),
	CONSTRAINT "agent_schedules_priority_values" CHECK ("agent_schedules"."priority" in ('high', 'medium', 'low'))
);
--> statement-breakpoint
ALTER TABLE "background_tasks" ADD COLUMN "retry_of" text;--> statement-breakpoint
ALTER TABLE "background_tasks" ADD COLUMN "schedule_id" uuid;--> statement-breakpoint
ALTER TABLE "agent_schedules" ADD CONSTRAINT "agent_schedules_agent_id_agents_agent_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("agent_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agent_schedules_due_idx" ON "agent_schedules" USING btree ("next_run_at") WHERE "agent_schedules"."enabled";--> statement-breakpoint
CREATE UNIQUE INDEX "background_tasks_retry_of_key" ON "background_tasks" USING btree ("retry_of");--> statement-breakpoint
CREATE INDEX "background_tasks_created_task_idx" ON "background_tasks" USING btree ("created_at" DESC NULLS LAST,"task_id" DESC NULLS LAST);--> statement-breakpoint
COMMENT ON TABLE "agent_schedules" IS 'One refresh schedule per agent (cron with a time zone, or a fixed interval); supervisors enqueue each due slot exactly once by compare-and-set on next_run_at.';--> statement-breakpoint
COMMENT ON COLUMN "background_tasks"."retry_of" IS 'The task this one retries; unique, so a task is retried at most once.';--> statement-breakpoint
COMMENT ON COLUMN "background_tasks"."schedule_id" IS 'The schedule that enqueued this task, if any.';
