-- Custom SQL migration: the webhook outbox is filled by a trigger.
--
-- A task ends in six places (completion, failure, timeout, cancel of a pending
-- or running task, a dead owner's last attempt). A row-level trigger records
-- the delivery in whichever transaction ends the task, so none of them can
-- forget it and a crash right after the commit loses nothing. NOTIFY (sent at
-- commit) wakes a sender at once; senders also sweep for due rows.
CREATE FUNCTION agentq_record_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO webhook_outbox (task_id, webhook_id, url, payload)
  VALUES (
    NEW.task_id,
    'msg_' || replace(gen_random_uuid()::text, '-', ''),
    NEW.webhook_url,
    jsonb_build_object(
      'task_id', NEW.task_id,
      'agent_id', NEW.agent_id,
      'status', NEW.status,
      'result', NEW.result,
      'error', NEW.error,
      'completed_at', NEW.completed_at
    )
  )
  ON CONFLICT (task_id) DO NOTHING;
  PERFORM pg_notify('agentq_webhooks', NEW.task_id);
  RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE TRIGGER background_tasks_record_webhook
  AFTER UPDATE OF status ON background_tasks
  FOR EACH ROW
  WHEN (
    NEW.webhook_url IS NOT NULL
    AND NEW.status IN ('completed', 'failed', 'cancelled', 'timeout')
    AND OLD.status IS DISTINCT FROM NEW.status
  )
  EXECUTE FUNCTION agentq_record_webhook();--> statement-breakpoint
COMMENT ON TABLE "webhook_outbox" IS 'Webhook deliveries still to make or made: one per task that ended with a webhook_url, written by trigger in the transaction that ended the task.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."webhook_id" IS 'Standard Webhooks message id (webhook-id header), the same for every attempt.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."payload" IS 'The terminal task as sent: task_id, agent_id, status, result, error, completed_at.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."status" IS 'pending (to send or retry), delivered, or dead (every attempt failed; can be redelivered).';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."attempts" IS 'Attempts made so far, across senders and redeliveries.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."round_attempts" IS 'Attempts since the delivery was last (re)started; the retry budget counts these.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."next_attempt_at" IS 'When the next attempt is due.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."locked_by" IS 'Sender currently delivering it.';--> statement-breakpoint
COMMENT ON COLUMN "webhook_outbox"."locked_until" IS 'Lock expiry: past it, another sender may take the delivery over (its sender died).';--> statement-breakpoint
COMMENT ON COLUMN "webhook_deliveries"."next_attempt_at" IS 'When the attempt after this one is due; null when this one was the last.';
