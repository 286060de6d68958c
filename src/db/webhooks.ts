/**
 * Statements on the webhook outbox and its attempt log. Rows are written by a
 * trigger when a task ends (drizzle/0004); senders claim due rows under a
 * time-limited lock for one attempt, and every write of a sender is fenced by
 * `locked_by`, so a sender whose lock was taken over (it stalled past
 * `locked_until`) writes nothing. A retry is the row itself, pending with a later
 * `next_attempt_at` and no lock: any sender claims it when it is due.
 */
import { sql, type SQL } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";
import { toIso, toIsoOrNull } from "./values.ts";
import { queryPrepared } from "./prepared.ts";
import { toPgArray } from "./taxonomy.ts";
import type { ListPosition } from "./tasks/list.ts";

/** The channel the outbox trigger notifies; senders LISTEN on it. */
export const WEBHOOK_CHANNEL = "agentq_webhooks";

export type DeliveryStatus = "pending" | "delivered" | "dead";
/** Why a delivery is dead (webhook_outbox.dead_reason). */
export type DeadReason = "exhausted" | "gone" | "rejected" | "unsafe_url";

export interface ClaimedDelivery {
  taskId: string;
  webhookId: string;
  url: string;
  payload: Record<string, unknown>;
  /** Attempts already made in this round: the next wait is step `roundAttempts` of the schedule. */
  roundAttempts: number;
  /** Its URL answered 410 Gone to an earlier delivery (webhook_gone_urls): it is not attempted. */
  gone: boolean;
}

/** Locks up to `limit` due deliveries for `senderId` (for one attempt each), oldest due first. */
export async function claimDueDeliveries(db: DbOrTx, senderId: string, limit: number, lockMs: number): Promise<ClaimedDelivery[]> {
  const rows = await queryPrepared<{ task_id: string; webhook_id: string; url: string; payload: Record<string, unknown>; round_attempts: number; gone: boolean }>(
    db,
    sql`
    update webhook_outbox o
    set locked_by = ${senderId}, locked_until = now() + ${lockMs}::int * interval '1 millisecond', updated_at = now()
    from (select task_id from webhook_outbox
          where status = 'pending' and next_attempt_at <= now() and (locked_until is null or locked_until < now())
          order by next_attempt_at limit ${limit}::int for update skip locked) due
    where o.task_id = due.task_id
    returning o.task_id, o.webhook_id, o.url, o.payload, o.round_attempts,
      exists (select 1 from webhook_gone_urls g where g.url = o.url) as gone`,
  );
  return rows.map((r) => ({ taskId: r.task_id, webhookId: r.webhook_id, url: r.url, payload: r.payload, roundAttempts: r.round_attempts, gone: r.gone }));
}

export interface AttemptRecord {
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  /** How the delivery ends with this attempt; null when another attempt follows. */
  final: "delivered" | "dead" | null;
  /** With final = dead: why. */
  deadReason: DeadReason | null;
  /** With final = null: the next attempt is due this long after now (the row waits unlocked). */
  nextDelayMs: number | null;
  /** The receiver answered 410 Gone: mark the URL so no delivery to it is attempted again. */
  markGone: boolean;
}

/**
 * Records one attempt in one statement: the attempt row (with when the next is due), the
 * task's webhook_retry_count, the outbox state (delivered, dead with its reason, or pending
 * again with its next_attempt_at and no lock, for any sender to claim when due) and, on a
 * 410, the URL's gone mark. Null when the lock was lost (another sender took it over).
 */
export async function recordAttempt(
  db: DbOrTx,
  taskId: string,
  senderId: string,
  attempt: AttemptRecord,
): Promise<{ attemptRowId: number; attempt: number; nextAttemptAt: string | null } | null> {
  const rows = await queryPrepared<{ attempt_row_id: number; attempt: number; next_attempt_at: string | null }>(
    db,
    sql`
    with o as (
      update webhook_outbox
      set attempts = attempts + 1, round_attempts = round_attempts + 1,
          last_status_code = ${attempt.statusCode}::int, last_error = ${attempt.error}::text,
          status = coalesce(${attempt.final}::text, status),
          dead_reason = ${attempt.deadReason}::text,
          delivered_at = case when ${attempt.final}::text = 'delivered' then now() else delivered_at end,
          next_attempt_at = case when ${attempt.final}::text is null
            then now() + ${attempt.nextDelayMs}::float8 * interval '1 millisecond' else next_attempt_at end,
          locked_by = null, locked_until = null,
          updated_at = now()
      where task_id = ${taskId} and locked_by = ${senderId} and status = 'pending'
      returning task_id, url, webhook_id, attempts, status, next_attempt_at
    ),
    logged as (
      insert into webhook_deliveries (task_id, url, attempt, status_code, error, duration_ms, next_attempt_at)
      select task_id, url, attempts, ${attempt.statusCode}::int, ${attempt.error}::text, ${attempt.durationMs}::int,
        case when status = 'pending' then next_attempt_at end
      from o
      returning delivery_attempt_id, attempt, next_attempt_at
    ),
    counted as (
      update background_tasks t set webhook_retry_count = t.webhook_retry_count + 1
      from o where t.task_id = o.task_id
      returning 1
    ),
    gone as (
      insert into webhook_gone_urls (url, task_id, webhook_id)
      select url, task_id, webhook_id from o where ${attempt.markGone}::boolean
      on conflict (url) do update set task_id = excluded.task_id, webhook_id = excluded.webhook_id, marked_at = now()
      returning 1
    )
    select delivery_attempt_id::int as attempt_row_id, attempt, next_attempt_at from logged`,
  );
  const row = rows[0];
  return row ? { attemptRowId: row.attempt_row_id, attempt: row.attempt, nextAttemptAt: toIsoOrNull(row.next_attempt_at) } : null;
}

/**
 * Ends a claimed delivery whose URL is marked gone, without an attempt: dead, reason gone.
 * False when the mark was removed meanwhile (a redelivery re-enabled the URL) or the lock
 * was lost: the caller then attempts it as usual (or leaves it).
 */
export async function endGoneDelivery(db: DbOrTx, taskId: string, senderId: string): Promise<boolean> {
  const rows = await queryPrepared<{ ok: number }>(
    db,
    sql`
    update webhook_outbox o
    set status = 'dead', dead_reason = 'gone', locked_by = null, locked_until = null, updated_at = now(),
        last_error = 'not attempted: this URL answered 410 Gone to the delivery of task ' || g.task_id || ' at ' || to_char(g.marked_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    from webhook_gone_urls g
    where o.task_id = ${taskId} and o.locked_by = ${senderId} and o.status = 'pending' and g.url = o.url
    returning 1 as ok`,
  );
  return rows.length > 0;
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
  dead_reason: DeadReason | null;
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
    select task_id, webhook_id, url, status, dead_reason, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at
    from webhook_outbox where task_id = ${taskId}`);
  if (!row) return null;
  const attempts = await db.execute<Record<string, unknown>>(sql`
    select attempt, status_code, error, duration_ms, created_at from webhook_deliveries
    where task_id = ${taskId} order by attempt`);
  return {
    task_id: String(row.task_id),
    ...outboxFields(row),
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
 * Starts a finished (dead or delivered) delivery again from the first step of the
 * schedule, with the same webhook-id, and wakes the senders. Redelivering by task id is an
 * operator's decision about this URL: it also removes the URL's gone mark (a 410 it
 * answered before), so this delivery and later ones are attempted again. Returns the state
 * it was in, or null when the task has no delivery.
 */
export async function restartDelivery(db: DbOrTx, taskId: string): Promise<{ previous: DeliveryStatus } | null> {
  const rows = await db.execute<{ previous: DeliveryStatus }>(sql`
    with prev as (select task_id, status from webhook_outbox where task_id = ${taskId} for update),
    restarted as (
      update webhook_outbox o
      set status = 'pending', dead_reason = null, round_attempts = 0, next_attempt_at = now(), locked_by = null, locked_until = null,
          delivered_at = null, updated_at = now()
      from prev where o.task_id = prev.task_id and prev.status <> 'pending'
      returning o.task_id, o.url
    ),
    ungone as (delete from webhook_gone_urls g using restarted r where g.url = r.url returning 1),
    woken as (select pg_notify(${WEBHOOK_CHANNEL}, task_id) from restarted)
    select prev.status as previous, (select count(*) from woken) as notified from prev`);
  return rows[0] ? { previous: rows[0].previous } : null;
}

/** A delivery in a list: the delivery view without its attempt log, with the task's agent. */
export type DeliverySummary = Omit<DeliveryView, "attempt_log"> & { agent_id: string; updated_at: string };

export interface DeliveryFilter {
  statuses?: readonly DeliveryStatus[];
  agentId?: string;
  /** Inclusive lower bound of created_at (when the task ended and the delivery was recorded). */
  createdAfter?: string;
  /** Exclusive upper bound of created_at. */
  createdBefore?: string;
  taskIds?: readonly string[];
}

function deliveryConditions(filter: DeliveryFilter): SQL[] {
  const where: SQL[] = [];
  if (filter.statuses?.length) where.push(sql`o.status = any(${toPgArray([...filter.statuses])}::text[])`);
  if (filter.agentId !== undefined) where.push(sql`t.agent_id = ${filter.agentId}::uuid`);
  if (filter.createdAfter !== undefined) where.push(sql`o.created_at >= ${filter.createdAfter}::timestamptz`);
  if (filter.createdBefore !== undefined) where.push(sql`o.created_at < ${filter.createdBefore}::timestamptz`);
  if (filter.taskIds?.length) where.push(sql`o.task_id = any(${toPgArray([...filter.taskIds])}::text[])`);
  return where;
}

const whereAll = (conditions: SQL[]) => (conditions.length ? sql`where ${sql.join(conditions, sql` and `)}` : sql``);

/**
 * One page of deliveries, newest first (created_at desc, task_id desc), after `after` when
 * given: the task list's keyset paging (src/db/tasks/list.ts), on the outbox. With a status,
 * a range of webhook_outbox_status_created_idx read backwards; the agent comes from the task
 * (every outbox row has its task: they are deleted together).
 */
export async function listDeliveries(
  db: DbOrTx,
  filter: DeliveryFilter,
  page: { limit: number; after?: ListPosition },
): Promise<{ deliveries: DeliverySummary[]; next: ListPosition | null }> {
  const where = deliveryConditions(filter);
  if (page.after)
    where.push(sql`(o.created_at, o.task_id) < ((${page.after.createdAt}::timestamp at time zone 'UTC'), ${page.after.taskId}::text)`);
  const rows = await db.execute<Record<string, unknown> & { position_at: string; task_id: string }>(sql`
    select o.task_id, t.agent_id, o.webhook_id, o.url, o.status, o.dead_reason, o.attempts, o.next_attempt_at,
      o.last_status_code, o.last_error, o.created_at, o.updated_at, o.delivered_at,
      to_char(o.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as position_at
    from webhook_outbox o join background_tasks t on t.task_id = o.task_id
    ${whereAll(where)}
    order by o.created_at desc, o.task_id desc
    limit ${page.limit + 1}::int`);
  const more = rows.length > page.limit;
  const shown = more ? rows.slice(0, page.limit) : rows;
  const last = shown[shown.length - 1];
  return {
    deliveries: shown.map((row) => ({
      task_id: row.task_id,
      agent_id: String(row.agent_id),
      ...outboxFields(row),
      updated_at: toIso(row.updated_at as string),
    })),
    next: more && last ? { createdAt: last.position_at, taskId: last.task_id } : null,
  };
}

/**
 * Bulk redelivery, in one statement: restarts up to `max` deliveries in `status` (dead or
 * delivered) that match the filter, oldest first, as restartDelivery does one (first step of
 * the schedule, same webhook-id), and wakes the senders with one notification. Deliveries
 * whose URL is marked gone are left as they are (a bulk call does not re-enable a URL that
 * asked for no more webhooks; redelivering one by task id does). Rows another statement
 * holds are skipped, so concurrent calls never restart one delivery twice.
 */
export async function restartDeliveries(
  db: DbOrTx,
  status: "dead" | "delivered",
  filter: Omit<DeliveryFilter, "statuses">,
  max: number,
): Promise<{ taskIds: string[]; more: boolean }> {
  const where = [...deliveryConditions({ ...filter, statuses: [status] }), sql`not exists (select 1 from webhook_gone_urls g where g.url = o.url)`];
  const rows = await db.execute<{ task_id: string | null; more: boolean }>(sql`
    with candidates as (
      select o.task_id, o.created_at from webhook_outbox o join background_tasks t on t.task_id = o.task_id
      ${whereAll(where)}
      order by o.created_at, o.task_id
      limit ${max + 1}::int
      for update of o skip locked
    ),
    chosen as (select task_id from candidates order by created_at, task_id limit ${max}::int),
    restarted as (
      update webhook_outbox o
      set status = 'pending', dead_reason = null, round_attempts = 0, next_attempt_at = now(), locked_by = null, locked_until = null,
          delivered_at = null, updated_at = now()
      from chosen where o.task_id = chosen.task_id
      returning o.task_id, o.created_at
    ),
    woken as (select pg_notify(${WEBHOOK_CHANNEL}, 'redeliver') as n where exists (select 1 from restarted))
    select r.task_id, (select count(*) from candidates) > ${max}::int as more, (select count(*) from woken) as notified
    from (select 1) one left join restarted r on true
    order by r.created_at, r.task_id`);
  return { taskIds: rows.flatMap((r) => (r.task_id === null ? [] : [r.task_id])), more: rows[0]?.more ?? false };
}

/** A webhook_outbox row's fields as the API shows them (the delivery view and the listing). */
function outboxFields(row: Record<string, unknown>) {
  return {
    webhook_id: String(row.webhook_id),
    url: String(row.url),
    status: row.status as DeliveryStatus,
    // A release before dead_reason (rolled back to) may leave one on a restarted row.
    dead_reason: row.status === "dead" ? ((row.dead_reason as DeadReason | null) ?? null) : null,
    attempts: Number(row.attempts),
    next_attempt_at: row.status === "pending" ? toIsoOrNull(row.next_attempt_at as string | null) : null,
    last_status_code: row.last_status_code === null ? null : Number(row.last_status_code),
    last_error: (row.last_error as string | null) ?? null,
    created_at: toIso(row.created_at as string),
    delivered_at: toIsoOrNull(row.delivered_at as string | null),
  };
}
