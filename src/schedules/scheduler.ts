/**
 * Fires scheduled refreshes. Every supervisor runs one (src/supervisor/engine.ts); they need no
 * coordination beyond PostgreSQL:
 *
 *   every AGENTQ_SCHEDULE_EVERY_MS, one transaction per page of due schedules:
 *     SELECT the due schedules FOR UPDATE SKIP LOCKED (another supervisor's are skipped)
 *     compute each one's next slot from the transaction's now() (croner for cron)
 *     ONE statement: advance next_run_at by compare-and-set + insert the tasks (schedule_id)
 *   COMMIT, then ZADD the new task ids to Redis
 *
 * - Exactly once per slot: the slot's task and the advance of next_run_at commit together, and
 *   only the transaction holding the row's lock (and whose compare-and-set matched) writes them.
 *   A crash before the commit writes nothing (PostgreSQL rolls it back and frees the lock): the
 *   slot is still due, and the next pass of any supervisor fires it.
 * - A lost dispatch (a crash, or Redis down, after the commit) leaves a pending task in no
 *   queue: the reconciler re-dispatches it like any other (AGENTQ_STALE_PENDING_MS).
 * - Catch-up: the next slot is the first one after now, so a schedule that missed many slots
 *   while every supervisor was down fires once, not once per missed slot.
 */
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import { fireSlots, lockDueSchedules, type DueSchedule, type FiredSlot, type SlotFiring } from "../db/schedules.ts";
import { toIso } from "../db/values.ts";
import type { Dispatcher } from "../queue/dispatch.ts";
import { newTaskId } from "../core/tasks.ts";
import { createMetrics, type Metrics } from "../metrics/registry.ts";
import { PeriodicPass } from "../supervisor/periodic.ts";
import { TaskTelemetry } from "../metrics/taskEvents.ts";
import { nextRunAfter } from "./timing.ts";
import type { TaskEventPublisher } from "../queue/taskEvents.ts";

/** Schedules fired per transaction; a pass goes on page by page while pages come back full. */
export const SCHEDULE_PAGE = 100;

export interface SchedulerDeps {
  config: Pick<Config, "scheduleEveryMs" | "taskTimeoutMs" | "maxAttempts">;
  database: Database;
  dispatcher: Dispatcher;
  logger: Logger;
  metrics?: Metrics;
  /** Live task events: a scheduled task's `pending`, as for every other way of making a task. */
  taskEvents?: TaskEventPublisher;
}

export class Scheduler {
  private readonly periodic: PeriodicPass;
  private stopped = true;
  private readonly telemetry: TaskTelemetry;

  /** `onFired` hears every committed pass's slots (tests, benchmarks). */
  constructor(
    private readonly deps: SchedulerDeps,
    private readonly onFired?: (fired: FiredSlot[]) => void,
  ) {
    this.telemetry = new TaskTelemetry(deps.metrics ?? createMetrics({}, { processMetrics: false }), deps.logger);
    this.periodic = new PeriodicPass(() => deps.config.scheduleEveryMs, () => this.tick());
  }

  start() {
    this.stopped = false;
    this.periodic.start();
  }

  private async tick() {
    try {
      await this.fireDue();
    } catch (error) {
      this.deps.logger.warn({ err: error }, "schedule pass failed; the slots stay due and the next pass fires them");
    }
  }

  /** One pass: fires every due slot, a page per transaction. Returns what it fired. */
  async fireDue(): Promise<FiredSlot[]> {
    const all: FiredSlot[] = [];
    for (;;) {
      const { fired, full } = await this.firePage();
      all.push(...fired);
      if (!full || this.stopped) break;
    }
    return all;
  }

  private async firePage(): Promise<{ fired: FiredSlot[]; full: boolean }> {
    const { database, config } = this.deps;
    let locked = 0;
    const fired = await database.db.transaction(async (tx) => {
      const due = await lockDueSchedules(tx, SCHEDULE_PAGE);
      locked = due.length;
      return fireSlots(tx, due.map((s) => this.slotFiring(s)), { timeoutMs: config.taskTimeoutMs, maxAttempts: config.maxAttempts });
    });
    // Committed: now the new tasks go to Redis. Should this fail (or the process die here), the
    // tasks are pending in PostgreSQL and in no queue, and the reconciler dispatches them.
    const created = fired.filter((f) => f.created && f.task_id !== null);
    for (const f of fired) {
      this.deps.logger.info(
        { event: "schedule_fired", schedule_id: f.schedule_id, agent_id: f.agent_id, slot: toIso(f.slot), next_run_at: f.next_run_at, task_id: f.task_id, created: f.created },
        "schedule fired",
      );
      if (f.created) this.telemetry.enqueued({ task_id: f.task_id!, agent_id: f.agent_id, priority: f.priority });
    }
    const at = new Date().toISOString();
    for (const f of created)
      this.deps.taskEvents?.publish({ type: "status", task_id: f.task_id!, agent_id: f.agent_id, status: "pending", percent: 0, attempt: 0, at });
    try {
      await this.deps.dispatcher.dispatch(created.map((f) => ({ taskId: f.task_id!, priority: f.priority, score: Date.parse(f.created_at!) })));
    } catch (error) {
      this.deps.logger.warn({ err: error, tasks: created.length }, "dispatch of scheduled tasks failed; the reconciler will dispatch them");
    }
    if (fired.length > 0) this.onFired?.(fired);
    return { fired, full: locked === SCHEDULE_PAGE };
  }

  /** The slot's firing: its next slot is the first one after the transaction's now(). */
  private slotFiring(s: DueSchedule): SlotFiring {
    let next: Date | null;
    try {
      next = nextRunAfter(s, new Date(toIso(s.now)), new Date(toIso(s.slot)));
    } catch (error) {
      // E.g. a time zone the runtime no longer knows: fire this slot, then stay quiet until the schedule is replaced.
      this.deps.logger.error({ err: error, schedule_id: s.schedule_id, agent_id: s.agent_id }, "cannot compute the next run of a schedule; it stops after this slot");
      next = null;
    }
    return { schedule_id: s.schedule_id, slot: s.slot, next, task_id: newTaskId() };
  }

  async stop() {
    this.stopped = true;
    await this.periodic.stop();
  }
}
