ALTER TABLE "background_tasks" ADD COLUMN "dedupe" boolean DEFAULT true NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "background_tasks_one_pending_per_agent" ON "background_tasks" USING btree ("agent_id") WHERE "background_tasks"."status" = 'pending' and "background_tasks"."dedupe";--> statement-breakpoint
CREATE INDEX "background_tasks_running_lease_idx" ON "background_tasks" USING btree ("lease_expires_at") WHERE "background_tasks"."status" = 'running';--> statement-breakpoint
CREATE INDEX "background_tasks_status_completed_idx" ON "background_tasks" USING btree ("status","completed_at");--> statement-breakpoint
COMMENT ON COLUMN "background_tasks"."dedupe" IS 'Counts for one-pending-refresh-per-agent; false for ?force=true and retried tasks.';
