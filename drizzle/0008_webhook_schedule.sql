CREATE TABLE "webhook_gone_urls" (
	"url" text PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"webhook_id" text NOT NULL,
	"marked_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "webhook_outbox" ADD COLUMN "dead_reason" text;--> statement-breakpoint
CREATE INDEX "webhook_outbox_status_created_idx" ON "webhook_outbox" USING btree ("status","created_at","task_id");--> statement-breakpoint
-- Custom SQL: deliveries that died before this migration get the reason their last attempt shows.
UPDATE "webhook_outbox" SET "dead_reason" = CASE
  WHEN "last_error" LIKE 'unsafe webhook URL:%' THEN 'unsafe_url'
  WHEN "last_status_code" BETWEEN 300 AND 499 AND "last_status_code" NOT IN (408, 429) THEN 'rejected'
  ELSE 'exhausted' END
WHERE "status" = 'dead';--> statement-breakpoint
ALTER TABLE "webhook_outbox" ADD CONSTRAINT "webhook_outbox_dead_reason_values" CHECK ("webhook_outbox"."dead_reason" is null or "webhook_outbox"."dead_reason" in ('exhausted', 'gone', 'rejected', 'unsafe_url'));--> statement-breakpoint
COMMENT ON TABLE "webhook_gone_urls" IS 'Webhook URLs that answered 410 Gone: no delivery to the exact URL is attempted (it ends dead, reason gone) until a delivery of it is redelivered by task id.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_gone_urls"."task_id" IS 'The task whose delivery got the 410 (no foreign key: the mark outlives the task).';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."dead_reason" IS 'Why a dead delivery is dead: exhausted (the retry schedule is spent), gone (HTTP 410, or its URL had answered 410), rejected (another 4xx, or a 3xx), unsafe_url. Null while pending or delivered (and for deliveries ended by a release older than this column).';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."round_attempts" IS 'Attempts since the delivery was last (re)started: the next wait is step round_attempts of the retry schedule.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."next_attempt_at" IS 'When the next attempt is due: senders claim pending rows by it, so a retry waits in the table, not in a sender.';
