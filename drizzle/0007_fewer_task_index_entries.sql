DROP INDEX "background_tasks_agent_id_idx";--> statement-breakpoint
DROP INDEX "background_tasks_status_idx";--> statement-breakpoint
DROP INDEX "background_tasks_created_at_idx";--> statement-breakpoint
DROP INDEX "background_tasks_retry_of_key";--> statement-breakpoint
DROP INDEX "background_tasks_status_completed_idx";--> statement-breakpoint
CREATE UNIQUE INDEX "background_tasks_retry_of_key" ON "background_tasks" USING btree ("retry_of") WHERE "background_tasks"."retry_of" is not null;--> statement-breakpoint
CREATE INDEX "background_tasks_status_completed_idx" ON "background_tasks" USING btree ("status","completed_at") WHERE "background_tasks"."status" in ('completed', 'failed', 'cancelled', 'timeout');