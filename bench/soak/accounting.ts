/**
 * The end of the soak: nothing lost, nothing doubled. Read from PostgreSQL once the load has
 * stopped and everything drained, against what the clients were handed and what the receiver got:
 *
 *   - every task is terminal, and the tasks in the table are exactly the ones handed out
 *     (burn-down + load + cancels): none missing, none extra;
 *   - exactly one coverage_history row per completed task, and none for any other task;
 *   - one outbox row per terminal task with a webhook_url; none pending; each delivered one was
 *     accepted by the receiver (a 2xx to its webhook-id), each dead one has a reason; webhook-ids
 *     the receiver accepted more than once are counted (at-least-once delivery allows them).
 */
import type { Runtime } from "../../src/main.ts";

export interface Accounting {
  tasks: number;
  byStatus: Record<string, number>;
  notTerminal: number;
  /** Handed out but not in the table. */
  missing: number;
  /** In the table but never handed out. */
  extra: number;
  completedWithoutHistory: number;
  historyRowsOfCompleted: number;
  /** History rows whose task is missing or not completed, or several rows for one task. */
  strayHistory: number;
  withWebhook: number;
  outbox: Record<string, number>;
  /** Terminal tasks with a webhook_url and no outbox row. */
  outboxMissing: number;
  /** Delivered rows the receiver never accepted. */
  deliveredNotReceived: number;
  /** Webhook-ids accepted more than once. */
  receivedTwice: number;
  deadWithoutReason: number;
  ok: boolean;
  problems: string[];
}

export async function account(runtime: Runtime, handedOut: Set<string>, accepted: Map<string, number>): Promise<Accounting> {
  const { sql } = runtime.database;
  const statuses = await sql<{ status: string; n: number }[]>`select status, count(*)::int as n from background_tasks group by status`;
  const byStatus = Object.fromEntries(statuses.map((r) => [r.status, r.n]));
  const tasks = statuses.reduce((a, r) => a + r.n, 0);
  const ids = new Set((await sql<{ task_id: string }[]>`select task_id from background_tasks`).map((r) => r.task_id));
  let missing = 0;
  for (const id of handedOut) if (!ids.has(id)) missing++;
  let extra = 0;
  for (const id of ids) if (!handedOut.has(id)) extra++;
  const [history] = await sql<{ without: number; of_completed: number; stray: number }[]>`
    select (select count(*) from background_tasks t where t.status = 'completed'
              and not exists (select 1 from coverage_history h where h.task_id = t.task_id))::int as without,
           (select count(*) from coverage_history h join background_tasks t on t.task_id = h.task_id and t.status = 'completed')::int as of_completed,
           (select count(*) from coverage_history h left join background_tasks t on t.task_id = h.task_id
              where t.task_id is null or t.status <> 'completed')::int as stray`;
  const outboxRows = await sql<{ status: string; n: number }[]>`select status, count(*)::int as n from webhook_outbox group by status`;
  const outbox = Object.fromEntries(outboxRows.map((r) => [r.status, r.n]));
  const [hooks] = await sql<{ with_webhook: number; missing: number; dead_no_reason: number }[]>`
    select (select count(*) from background_tasks where webhook_url is not null)::int as with_webhook,
           (select count(*) from background_tasks t where t.webhook_url is not null
              and t.status in ('completed', 'failed', 'timeout', 'cancelled')
              and not exists (select 1 from webhook_outbox o where o.task_id = t.task_id))::int as missing,
           (select count(*) from webhook_outbox where status = 'dead' and dead_reason is null)::int as dead_no_reason`;
  const delivered = await sql<{ webhook_id: string }[]>`select webhook_id from webhook_outbox where status = 'delivered'`;
  let deliveredNotReceived = 0;
  for (const r of delivered) if (!accepted.has(r.webhook_id)) deliveredNotReceived++;
  let receivedTwice = 0;
  for (const n of accepted.values()) if (n > 1) receivedTwice++;
  const notTerminal = (byStatus.pending ?? 0) + (byStatus.running ?? 0);
  const a: Accounting = {
    tasks,
    byStatus,
    notTerminal,
    missing,
    extra,
    completedWithoutHistory: history!.without,
    historyRowsOfCompleted: history!.of_completed,
    strayHistory: history!.stray + Math.max(0, history!.of_completed - (byStatus.completed ?? 0)),
    withWebhook: hooks!.with_webhook,
    outbox,
    outboxMissing: hooks!.missing,
    deliveredNotReceived,
    receivedTwice,
    deadWithoutReason: hooks!.dead_no_reason,
    ok: false,
    problems: [],
  };
  const check = (bad: boolean, text: string) => bad && a.problems.push(text);
  check(notTerminal > 0, `${notTerminal} tasks not terminal`);
  check(missing > 0, `${missing} tasks handed out are missing`);
  check(extra > 0, `${extra} tasks nobody asked for`);
  check(a.completedWithoutHistory > 0, `${a.completedWithoutHistory} completed tasks without a history row`);
  check(a.strayHistory > 0, `${a.strayHistory} history rows not one-per-completed-task`);
  check(a.outboxMissing > 0, `${a.outboxMissing} terminal tasks with a webhook_url have no outbox row`);
  check((outbox.pending ?? 0) > 0, `${outbox.pending} webhook deliveries still pending`);
  check(deliveredNotReceived > 0, `${deliveredNotReceived} deliveries recorded delivered that the receiver never accepted`);
  check(a.deadWithoutReason > 0, `${a.deadWithoutReason} dead deliveries without a reason`);
  a.ok = a.problems.length === 0;
  return a;
}
