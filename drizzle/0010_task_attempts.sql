CREATE TABLE "task_attempts" (
	"task_attempt_id" bigserial PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"attempt" integer NOT NULL,
	"started_at" timestamp with time zone,
	"ended_at" timestamp with time zone DEFAULT now() NOT NULL,
	"outcome" text NOT NULL,
	"refunded" boolean DEFAULT false NOT NULL,
	CONSTRAINT "task_attempts_attempt_positive" CHECK ("task_attempts"."attempt" >= 1)
);
--> statement-breakpoint
ALTER TABLE "task_attempts" ADD CONSTRAINT "task_attempts_task_id_background_tasks_task_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."background_tasks"("task_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "task_attempts_task_id_idx" ON "task_attempts" USING btree ("task_id","task_attempt_id");--> statement-breakpoint
COMMENT ON TABLE "task_attempts" IS 'Earlier attempts of a task: written only when an attempt ends and the task goes back to pending (retry, lapsed lease, hand-back); the latest attempt stays in background_tasks.started_at/completed_at';--> statement-breakpoint
COMMENT ON COLUMN "task_attempts"."attempt" IS 'The attempt number (background_tasks.attempt when it ran); a refunded attempt''s number is used again by the next claim';--> statement-breakpoint
COMMENT ON COLUMN "task_attempts"."outcome" IS 'Why the attempt ended: the retry''s reason (lease expired, worker thread crashed, database connection lost, handed back on shutdown...)';--> statement-breakpoint
COMMENT ON COLUMN "task_attempts"."refunded" IS 'The attempt was given back (not counted against max_attempts): the task was interrupted through no fault of its own';
