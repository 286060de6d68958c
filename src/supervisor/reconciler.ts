/**
 * Repairs what crashes leave behind, so that no task is lost:
 *  - running tasks whose lease lapsed (their owner died) go back to pending and
 *    to Redis, or end failed after their last attempt;
 *  - pending tasks that Redis does not hold (FLUSHALL, failover, a crash between
 *    the INSERT and the ZADD, a popped id whose claimer died) are re-dispatched;
 *  - once an hour, the retention job deletes old terminal tasks and history.
 * Every step is idempotent and fenced, so several supervisors may run it at
 * once; retention takes an advisory lock so only one runs it at a time.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "drizzle-orm";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { limitedAgentsWithRoom, requeueExpiredLeases, stalePendingTasks, stillPending, type PendingCursor } from "../db/tasks/recovery.ts";
import type { Redispatch } from "../db/tasks/records.ts";
import { deleteExpired } from "../db/retention.ts";
import type { Dispatcher } from "../queue/dispatch.ts";
import type { Config } from "../config.ts";
import { createMetrics, type Metrics } from "../metrics/registry.ts";
import { PeriodicPass } from "./periodic.ts";
import { TaskTelemetry } from "../metrics/taskEvents.ts";
import type { TaskEventPublisher } from "../queue/taskEvents.ts";

const RETENTION_LOCK_KEY = 7_264_110_232;
const RETENTION_EVERY_MS = 3600_000;
/** Rows per statement of a pass: expired leases requeued, stale pending tasks checked against Redis. */
const LEASE_PAGE = 500;
const STALE_PAGE = 1000;
/**
 * How long a pending task missing from Redis is given before it is called lost. An actor pops
 * ids and claims them one round trip later, so an id popped just before the pass looked is in
 * no queue and still pending: without a second look, every pass over a backlog "recovered" a
 * few tasks that were being claimed (a duplicate dispatch, and a warning for nothing).
 */
export const POPPED_CLAIM_GRACE_MS = 250;

export interface ReconcileReport {
  requeued: number;
  failed: number;
  redispatched: number;
  /** Parked tasks moved back to their queue because their agent had room. */
  unparked: number;
}

export class Reconciler {
  private readonly periodic: PeriodicPass;
  private lastRetention = 0;
  /** Set by stop(): a pass in progress ends after its current page. */
  private halted = false;
  /** Aborted by stop(): ends a pass's wait for popped ids to be claimed. */
  private halting = new AbortController();
  private readonly telemetry: TaskTelemetry;

  constructor(
    private readonly deps: {
      config: Config;
      database: Database;
      dispatcher: Dispatcher;
      logger: Logger;
      metrics?: Metrics;
      /** Live task events: what a lapsed lease became (pending or failed). */
      taskEvents?: TaskEventPublisher;
    },
    private readonly onReport?: (report: ReconcileReport) => void,
  ) {
    this.telemetry = new TaskTelemetry(deps.metrics ?? createMetrics({}, { processMetrics: false }), deps.logger);
    this.periodic = new PeriodicPass(() => deps.config.reconcileEveryMs, () => this.tick());
  }

  start() {
    this.halted = false;
    this.halting = new AbortController();
    this.periodic.start();
  }

  private async tick() {
    try {
      const report = await this.reconcileOnce();
      if (report.requeued + report.failed + report.redispatched + report.unparked > 0) this.deps.logger.info(report, "reconciled");
      this.onReport?.(report);
      if (Date.now() - this.lastRetention >= RETENTION_EVERY_MS) {
        this.lastRetention = Date.now();
        await this.retainOnce();
      }
    } catch (error) {
      this.deps.logger.warn({ err: error }, "reconcile pass failed; will retry");
    }
  }

  /**
   * One pass. Both walks go page by page until a page comes back short, so a backlog of any size
   * is covered in every pass: a task Redis lost behind it is re-dispatched one period after it
   * went stale, not once the backlog drains. Each page is one bounded statement and one Redis
   * round trip; nothing is held between pages, so a pass in another supervisor can interleave.
   */
  async reconcileOnce(): Promise<ReconcileReport> {
    const { database, dispatcher, config } = this.deps;
    const report: ReconcileReport = { requeued: 0, failed: 0, redispatched: 0, unparked: 0 };
    // Each page of requeues takes its rows out of 'running', so the next one starts where it stopped.
    for (;;) {
      const expired = await requeueExpiredLeases(database.db, LEASE_PAGE);
      // Counted as soon as PostgreSQL has them: the transitions are made, whatever Redis does next.
      this.recordExpired(expired);
      const back = expired.filter((t) => t.status === "pending");
      await dispatcher.dispatch(back.map(toDispatchable));
      report.requeued += back.length;
      report.failed += expired.length - back.length;
      if (expired.length < LEASE_PAGE || this.halted) break;
    }
    let after: PendingCursor | undefined;
    // Pages of tasks that looked lost, each with when it was looked at; confirmed after the grace,
    // as the walk goes on, so a long walk after a Redis flush dispatches its first pages early.
    const suspects: { at: number; tasks: (Redispatch & { limited: boolean })[] }[] = [];
    const confirmDue = async (all: boolean) => {
      while (suspects.length > 0 && !this.halted) {
        const wait = suspects[0]!.at + POPPED_CLAIM_GRACE_MS - Date.now();
        if (wait > 0 && !all) return;
        await sleepUnless(this.halting.signal, wait);
        if (this.halted) return;
        const lost = await this.lostAmong(suspects.shift()!.tasks);
        await dispatcher.dispatch(lost.map(toDispatchable));
        for (const t of lost) this.telemetry.redispatched(ref(t));
        report.redispatched += lost.length;
      }
    };
    for (;;) {
      const page = await stalePendingTasks(database.db, config.stalePendingMs, { after, limit: STALE_PAGE });
      const at = Date.now();
      const looksLost = await this.lostAmong(page.tasks);
      if (looksLost.length > 0) suspects.push({ at, tasks: looksLost });
      await confirmDue(false);
      if (!page.next || this.halted) break;
      after = page.next;
    }
    await confirmDue(true);
    // Limited agents with room left: what their parks hold goes back to the queues, as many as fit.
    for (const { agent_id, room } of await limitedAgentsWithRoom(database.db)) {
      if (this.halted) break;
      report.unparked += (await dispatcher.parking.release(agent_id, room)).length;
    }
    return report;
  }

  /**
   * Of these pending tasks, those in no priority queue, (limited agents) in no park, and still
   * pending once that was checked: one popped meanwhile may have been claimed since.
   */
  private async lostAmong<T extends Redispatch & { limited: boolean }>(tasks: readonly T[]): Promise<T[]> {
    const { dispatcher, database } = this.deps;
    const queued = await dispatcher.queuedAmong(tasks.map((t) => ({ taskId: t.task_id, priority: t.priority })));
    const notQueued = tasks.filter((_, i) => !queued[i]);
    // A task of a limited agent waiting in its park is queued too, only elsewhere. (An agent
    // whose limit was lifted has its parked tasks re-dispatched: its park no longer counts.)
    const mayBeParked = notQueued.filter((t) => t.limited);
    const parkedFlags = await dispatcher.parking.parkedAmong(mayBeParked.map((t) => ({ taskId: t.task_id, agentId: t.agent_id })));
    const parked = new Set(mayBeParked.filter((_, i) => parkedFlags[i]).map((t) => t.task_id));
    const missing = notQueued.filter((t) => !parked.has(t.task_id));
    const pending = await stillPending(database.db, missing.map((t) => t.task_id));
    return missing.filter((t) => pending.has(t.task_id));
  }

  /** Leases that lapsed: back to pending (recovered), or ended failed / cancelled. */
  private recordExpired(expired: readonly Redispatch[]) {
    this.telemetry.leaseExpired(expired.length);
    const at = new Date().toISOString();
    for (const t of expired) {
      this.deps.taskEvents?.publish({
        type: "status",
        task_id: t.task_id,
        agent_id: t.agent_id,
        status: t.status,
        percent: t.status === "pending" ? 0 : null,
        attempt: t.attempt,
        at,
      });
      if (t.status === "pending") this.telemetry.retried({ ...ref(t), reason: "lease_expired" });
      else if (t.status === "failed")
        this.telemetry.finished({ ...ref(t), outcome: "failed", error: "gave up after attempts: lease expired (owner died)" });
      else if (t.status === "cancelled") this.telemetry.finished({ ...ref(t), outcome: "cancelled", reason: "lease_expired" }, "running");
    }
  }

  /** Runs retention if no other process is running it right now. */
  async retainOnce(): Promise<{ tasks: number; history: number } | null> {
    const { database, config, logger } = this.deps;
    return database.db.transaction(async (tx) => {
      const [lock] = await tx.execute<{ ok: boolean }>(sql`select pg_try_advisory_xact_lock(${RETENTION_LOCK_KEY}) as ok`);
      if (!lock?.ok) return null;
      const deleted = await deleteExpired(tx, config.taskRetentionMs, config.historyRetentionMs);
      if (deleted.tasks + deleted.history > 0) logger.info(deleted, "retention deleted old rows");
      return deleted;
    });
  }

  async stop() {
    this.halted = true;
    this.halting.abort();
    await this.periodic.stop();
  }
}

/** Waits `ms`, or less if `signal` aborts first (stop() during a pass). */
const sleepUnless = (signal: AbortSignal, ms: number): Promise<void> =>
  ms <= 0 ? Promise.resolve() : sleep(ms, undefined, { signal }).catch(() => {});

const ref = (t: Redispatch) => ({ task_id: t.task_id, agent_id: t.agent_id, attempt: t.attempt, priority: t.priority });

const toDispatchable = (t: Redispatch) => ({ taskId: t.task_id, priority: t.priority, score: Date.parse(t.created_at) });
