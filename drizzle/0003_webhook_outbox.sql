CREATE TABLE "webhook_outbox" (
	"task_id" text PRIMARY KEY NOT NULL,
	"webhook_id" text NOT NULL,
	"url" text NOT NULL,
	"payload" jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"round_attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"locked_by" text,
	"locked_until" timestamp with time zone,
	"last_status_code" integer,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone,
	CONSTRAINT "webhook_outbox_webhook_id_key" UNIQUE("webhook_id"),
	CONSTRAINT "webhook_outbox_status_values" CHECK ("webhook_outbox"."status" in ('pending', 'delivered', 'dead')),
	CONSTRAINT "webhook_outbox_attempts_nonnegative" CHECK ("webhook_outbox"."attempts" >= 0 and "webhook_outbox"."round_attempts" >= 0)
);
--> statement-breakpoint
ALTER TABLE "webhook_outbox" ADD CONSTRAINT "webhook_outbox_task_id_background_tasks_task_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."background_tasks"("task_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "webhook_outbox_due_idx" ON "webhook_outbox" USING btree ("next_attempt_at") WHERE "webhook_outbox"."status" = 'pending';