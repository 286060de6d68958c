/**
 * Statements on the webhook outbox and its attempt log. Rows are written by a
 * trigger when a task ends (drizzle/0004); senders claim due rows under a
 * time-limited lock, and every write of a sender is fenced by `locked_by`, so a
 * sender whose lock was taken over (it stalled past `locked_until`) writes nothing.
 */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";
import { toIso, toIsoOrNull } from "./values.ts";
import { queryPrepared } from "./prepared.ts";

/** The channel the outbox trigger notifies; senders LISTEN on it. */
export const WEBHOOK_CHANNEL = "agentq_webhooks";

export type DeliveryStatus = "pending" | "delivered" | "dead";

export interface ClaimedDelivery {
  taskId: string;
  webhookId: string;
  url: string;
  payload: Record<string, unknown>;
  /** Attempts already made in this round (the retry budget counts these). */
  roundAttempts: number;
}

/** Locks up to `limit` due deliveries for `senderId`, oldest due first. */
export async function claimDueDeliveries(db: DbOrTx, senderId: string, limit: number, lockMs: number): Promise<ClaimedDelivery[]> {
  const rows = await queryPrepared<{ task_id: string; webhook_id: string; url: string; payload: Record<string, unknown>; round_attempts: number }>(
    db,
    sql`
    update webhook_outbox o
    set locked_by = ${senderId}, locked_until = now() + ${lockMs}::int * interval '1 millisecond', updated_at = now()
    from (select task_id from webhook_outbox
          where status = 'pending' and next_attempt_at <= now() and (locked_until is null or locked_until < now())
          order by next_attempt_at limit ${limit}::int for update skip locked) due
    where o.task_id = due.task_id
    returning o.task_id, o.webhook_id, o.url, o.payload, o.round_attempts`,
  );
  return rows.map((r) => ({ taskId: r.task_id, webhookId: r.webhook_id, url: r.url, payload: r.payload, roundAttempts: r.round_attempts }));
}

export interface AttemptRecord {
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  /** How the delivery ends with this attempt; null when another attempt follows. */
  final: "delivered" | "dead" | null;
  /** Lock kept while another attempt follows (covers the attempt and its backoff). */
  lockMs: number;
}

/**
 * Records one attempt in one statement: the attempt row, the task's
 * webhook_retry_count, and the outbox state. Null when the lock was lost.
 */
export async function recordAttempt(
  db: DbOrTx,
  taskId: string,
  senderId: string,
  attempt: AttemptRecord,
): Promise<{ attemptRowId: number; attempt: number } | null> {
  const rows = await queryPrepared<{ attempt_row_id: number; attempt: number }>(
    db,
    sql`
    with o as (
      update webhook_outbox
      set attempts = attempts + 1, round_attempts = round_attempts + 1,
          last_status_code = ${attempt.statusCode}::int, last_error = ${attempt.error}::text,
          status = coalesce(${attempt.final}::text, status),
          delivered_at = case when ${attempt.final}::text = 'delivered' then now() else delivered_at end,
          locked_until = case when ${attempt.final}::text is null then now() + ${attempt.lockMs}::int * interval '1 millisecond' end,
          locked_by = case when ${attempt.final}::text is null then locked_by end,
          updated_at = now()
      where task_id = ${taskId} and locked_by = ${senderId} and status = 'pending'
      returning task_id, url, attempts
    ),
    logged as (
      insert into webhook_deliveries (task_id, url, attempt, status_code, error, duration_ms)
      select task_id, url, attempts, ${attempt.statusCode}::int, ${attempt.error}::text, ${attempt.durationMs}::int from o
      returning delivery_attempt_id, attempt
    ),
    counted as (
      update background_tasks t set webhook_retry_count = t.webhook_retry_count + 1
      from o where t.task_id = o.task_id
      returning 1
    )
    select delivery_attempt_id::int as attempt_row_id, attempt from logged`,
  );
  const row = rows[0];
  return row ? { attemptRowId: row.attempt_row_id, attempt: row.attempt } : null;
}

/** After a retryable failure: the next attempt is due in `delayMs`; the lock covers the wait and the attempt. */
export async function scheduleRetry(
  db: DbOrTx,
  taskId: string,
  senderId: string,
  attemptRowId: number,
  delayMs: number,
  lockMs: number,
): Promise<void> {
  await queryPrepared(
    db,
    sql`
    with o as (
      update webhook_outbox
      set next_attempt_at = now() + ${delayMs}::int * interval '1 millisecond',
          locked_until = now() + ${delayMs + lockMs}::int * interval '1 millisecond', updated_at = now()
      where task_id = ${taskId} and locked_by = ${senderId} and status = 'pending'
      returning next_attempt_at
    )
    update webhook_deliveries d set next_attempt_at = o.next_attempt_at
    from o where d.delivery_attempt_id = ${attemptRowId}::bigint
    returning 1 as ok`,
  );
}

/** On a sender's stop: its unfinished deliveries become claimable at once. */
export async function releaseDeliveries(db: DbOrTx, senderId: string): Promise<number> {
  const rows = await db.execute(sql`
    update webhook_outbox set locked_by = null, locked_until = null, updated_at = now()
    where locked_by = ${senderId} and status = 'pending'
    returning 1`);
  return rows.length;
}

export interface DeliveryView {
  task_id: string;
  webhook_id: string;
  url: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
  attempt_log: {
    attempt: number;
    status_code: number | null;
    error: string | null;
    duration_ms: number | null;
    attempted_at: string;
  }[];
}

/** The delivery of a task with its attempts, oldest first; null when the task has none (yet). */
export async function getDelivery(db: DbOrTx, taskId: string): Promise<DeliveryView | null> {
  const [row] = await db.execute<Record<string, unknown>>(sql`
    select task_id, webhook_id, url, status, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at
    from webhook_outbox where task_id = ${taskId}`);
  if (!row) return null;
  const attempts = await db.execute<Record<string, unknown>>(sql`
    select attempt, status_code, error, duration_ms, created_at from webhook_deliveries
    where task_id = ${taskId} order by attempt`);
  return {
    task_id: String(row.task_id),
    webhook_id: String(row.webhook_id),
    url: String(row.url),
    status: row.status as DeliveryStatus,
    attempts: Number(row.attempts),
    next_attempt_at: row.status === "pending" ? toIsoOrNull(row.next_attempt_at as string | null) : null,
    last_status_code: row.last_status_code === null ? null : Number(row.last_status_code),
    last_error: (row.last_error as string | null) ?? null,
    created_at: toIso(row.created_at as string),
    delivered_at: toIsoOrNull(row.delivered_at as string | null),
    attempt_log: attempts.map((a) => ({
      attempt: Number(a.attempt),
      status_code: a.status_code === null ? null : Number(a.status_code),
      error: (a.error as string | null) ?? null,
      duration_ms: a.duration_ms === null ? null : Number(a.duration_ms),
      attempted_at: toIso(a.created_at as string),
    })),
  };
}

/**
 * Starts a finished (dead or delivered) delivery again with a fresh retry
 * budget and the same webhook-id, and wakes the senders. Returns the state it
 * was in, or null when the task has no delivery.
 */
export async function restartDelivery(db: DbOrTx, taskId: string): Promise<{ previous: DeliveryStatus } | null> {
  const rows = await db.execute<{ previous: DeliveryStatus }>(sql`
    with prev as (select task_id, status from webhook_outbox where task_id = ${taskId} for update),
    restarted as (
      update webhook_outbox o
      set status = 'pending', round_attempts = 0, next_attempt_at = now(), locked_by = null, locked_until = null,
          delivered_at = null, updated_at = now()
      from prev where o.task_id = prev.task_id and prev.status <> 'pending'
      returning o.task_id
    ),
    woken as (select pg_notify(${WEBHOOK_CHANNEL}, task_id) from restarted)
    select prev.status as previous, (select count(*) from woken) as notified from prev`);
  return rows[0] ? { previous: rows[0].previous } : null;
}
