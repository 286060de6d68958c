ALTER TABLE "agents" ADD COLUMN "max_concurrent_refreshes" integer;--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_max_concurrent_refreshes_range" CHECK ("agents"."max_concurrent_refreshes" between 1 and 10000);--> statement-breakpoint
COMMENT ON COLUMN "agents"."max_concurrent_refreshes" IS 'At most this many of the agent''s tasks run at once across every supervisor; null: no limit';
