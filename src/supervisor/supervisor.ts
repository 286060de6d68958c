/**
 * The supervisor: owns N long-lived worker actor threads, each running up to
 * C tasks at once. It is put together from parts with one job each:
 *
 *  - the pool (src/supervisor/pool.ts): threads, ready handshake, restarts;
 *  - the clock (src/supervisor/clock.ts): a task past its time limit is told to
 *    stop, and its thread terminated if it does not within the grace period;
 *  - the leases (src/supervisor/leases.ts): renewal of running tasks' leases,
 *    capacity heartbeats;
 *  - the drain (src/supervisor/drain.ts): graceful stop.
 *
 * It relays cancels heard on the cancel bus to the actor running the task, and
 * settles the tasks of a thread that died or was terminated (one statement,
 * through src/core/settle.ts like every other path).
 */
import type { RedisClient } from "../queue/redisClient.ts";
import type { Logger } from "pino";
import { randomBytes } from "node:crypto";
import type { Database } from "../db/client.ts";
import { endedByHolder, settleTasks, type Settled } from "../db/tasks/settle.ts";
import { endingFor, type Stop, type StopReason } from "../core/settle.ts";
import { Dispatcher } from "../queue/dispatch.ts";
import { queueKeys, type QueueKeys } from "../queue/keys.ts";
import { subscribeCancels } from "../queue/cancelBus.ts";
import { redisTargetOf } from "../queue/connection.ts";
import { assertNever, type WorkerMessage, type WorkerSettings } from "../protocol/messages.ts";
import type { Config } from "../config.ts";
import { isTerminal, type Priority, type TaskStatus } from "../core/tasks.ts";
import { createMetrics, type Metrics, type MetricSources } from "../metrics/registry.ts";
import { TaskTelemetry, type TaskRef } from "../metrics/taskEvents.ts";
import { WorkerPool, type RunningTask, type Slot } from "./pool.ts";
import { TaskClock } from "./clock.ts";
import { CapacityHeartbeat, LeaseKeeper, renewEveryMs } from "./leases.ts";
import { Changes } from "./changes.ts";
import { drain } from "./drain.ts";

export const DEFAULT_WORKER_URL = new URL("../../workers/main.ts", import.meta.url).href;

export interface SupervisorOptions {
  config: Config;
  database: Database;
  /** For commands (dispatch, capacity). */
  redis: RedisClient;
  /** A connection of its own for SUBSCRIBE (a subscribed connection runs no other commands). */
  subscriber: RedisClient;
  logger: Logger;
  workers: number;
  /** Tasks per worker thread (default: config.workerConcurrency). */
  concurrency?: number;
  /** Claim cooldown of its actors while they run tasks (default: config.claimCooldownMs). */
  claimCooldownMs?: number;
  /** Worker script; tests pass fixture actors that crash, hang or ignore cancels. */
  workerUrl?: string;
  id?: string;
  /** Called when the restart intensity is exceeded; the CLI exits non-zero. */
  onFatal?: (error: Error) => void;
  readyTimeoutMs?: number;
  spawnStaggerMs?: number;
  popTimeoutSeconds?: number;
  /** This process's metrics (the supervisor plugs its worker gauges in); a private registry if absent. */
  metrics?: Metrics;
}

/** Supervisors started and not stopped in this process (the tests' leak check). */
const liveSupervisors = new Set<Supervisor>();
export const liveSupervisorCount = (): number => liveSupervisors.size;

/** A cancel heard before the task's `started` message is kept this long, then forgotten. */
const EARLY_CANCEL_MS = 10_000;

/** Longest wait for the settle of a dead thread's tasks; past it, leases and the reconciler take over. */
const SETTLE_DEAD_MS = 5_000;

export class Supervisor {
  readonly id: string;
  readonly metrics: Metrics;
  readonly concurrency: number;
  private readonly keys: QueueKeys;
  private readonly dispatcher: Dispatcher;
  private readonly settings: WorkerSettings;
  private readonly pool: WorkerPool;
  private readonly clock = new TaskClock();
  private readonly leases: LeaseKeeper;
  private readonly heartbeat: CapacityHeartbeat;
  private readonly changes = new Changes();
  private readonly telemetry: TaskTelemetry;
  private readonly metricSources: MetricSources;
  private readonly earlyCancels = new Map<string, number>();
  private unsubscribe: (() => Promise<void>) | null = null;
  private draining = false;
  /** Past the drain deadline: every running task is being handed back. */
  private handingBack = false;
  private stopped = false;
  private readonly listeners = new Set<(event: SupervisorEvent) => void>();

  constructor(private readonly options: SupervisorOptions) {
    const c = options.config;
    this.metrics = options.metrics ?? createMetrics({}, { processMetrics: false });
    this.telemetry = new TaskTelemetry(this.metrics, options.logger);
    this.metricSources = { workers: () => this.workerCounts(), accrueBusySeconds: () => this.accrueBusy() };
    this.id = options.id ?? `sup-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.concurrency = options.concurrency ?? c.workerConcurrency;
    this.keys = queueKeys(c.redisPrefix);
    this.dispatcher = new Dispatcher(options.redis, this.keys);
    this.settings = {
      databaseUrl: c.databaseUrl,
      redis: redisTargetOf(c),
      redisPrefix: c.redisPrefix,
      confidenceThreshold: c.confidenceThreshold,
      defaultTargetDocuments: c.defaultTargetDocuments,
      leaseMs: c.leaseMs,
      concurrency: this.concurrency,
      claimCooldownMs: options.claimCooldownMs ?? c.claimCooldownMs,
      popTimeoutSeconds: options.popTimeoutSeconds ?? 1,
    };
    this.pool = new WorkerPool(
      {
        supervisorId: this.id,
        size: options.workers,
        workerUrl: options.workerUrl ?? DEFAULT_WORKER_URL,
        settings: this.settings,
        logger: options.logger,
        restartMax: c.restartMax,
        restartWindowMs: c.restartWindowMs,
        readyTimeoutMs: options.readyTimeoutMs,
      },
      {
        onMessage: (slot, message) => this.onMessage(slot, message),
        settleDead: (slot, code, crashed) => this.settleDead(slot, code, crashed),
        replacing: () => !this.draining && !this.stopped,
        onCrash: (slot, code) => this.emit({ type: "worker_crashed", workerId: slot.id, code }),
        onReplaced: (slot, crashed) => {
          this.metrics.workerRestarts.inc({ reason: crashed ? "crash" : "unresponsive" });
          this.emit({ type: "worker_replaced", workerId: slot.id });
        },
        onFatal: (error) => this.options.onFatal?.(error),
      },
    );
    this.leases = new LeaseKeeper({
      database: options.database,
      logger: options.logger,
      leaseMs: c.leaseMs,
      held: () => this.allTasks().map(({ task }) => ({ taskId: task.taskId, leaseToken: task.leaseToken })),
      onLost: (tokens) => this.leasesLost(tokens),
    });
    this.heartbeat = new CapacityHeartbeat({
      redis: options.redis,
      keys: this.keys,
      supervisorId: this.id,
      everyMs: renewEveryMs(c.leaseMs),
      logger: options.logger,
      capacity: () => {
        const { workers, busy } = this.stats();
        return { workers: workers * this.concurrency, busy };
      },
    });
  }

  /** Observe what happens (tests and metrics); returns an unsubscribe function. */
  on(listener: (event: SupervisorEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: SupervisorEvent) {
    for (const l of this.listeners) l(event);
  }

  async start(): Promise<void> {
    liveSupervisors.add(this);
    this.unsubscribe = await subscribeCancels(this.options.subscriber, this.keys, (taskId) => this.relayCancel(taskId));
    Object.assign(this.metrics.sources, this.metricSources);
    for (let i = 0; i < this.pool.size; i++) {
      await this.pool.spawn(i);
      if (this.options.spawnStaggerMs) await Bun.sleep(this.options.spawnStaggerMs);
    }
    this.leases.start();
    await this.heartbeat.start();
    this.options.logger.info({ supervisor: this.id, workers: this.pool.size, concurrency: this.concurrency }, "supervisor started");
  }

  /** Live threads (ready ones) and the tasks they run right now. */
  stats() {
    const live = this.pool.live().filter((s) => s.ready);
    return { workers: live.length, busy: live.reduce((n, s) => n + s.tasks.size, 0) };
  }

  /** For the worker gauges: task slots of live threads, and those running a task. */
  private workerCounts() {
    const { workers, busy } = this.stats();
    return { total: workers * this.concurrency, busy };
  }

  private allTasks(): { slot: Slot; task: RunningTask }[] {
    return this.pool.live().flatMap((slot) => [...slot.tasks.values()].map((task) => ({ slot, task })));
  }

  /** Adds the time each running task ran since the last call to agentq_worker_busy_seconds_total. */
  private accrueBusy(only?: RunningTask) {
    const now = performance.now();
    for (const task of only ? [only] : this.allTasks().map((t) => t.task)) {
      this.metrics.workerBusySeconds.inc(Math.max(0, now - task.busyAccruedAt) / 1000);
      task.busyAccruedAt = now;
    }
  }

  /** The tasks running now (tests use it to pick a victim). */
  runningTasks(): string[] {
    return this.allTasks().map(({ task }) => task.taskId);
  }

  private onMessage(slot: Slot, message: WorkerMessage) {
    switch (message.type) {
      case "ready":
        this.emit({ type: "worker_ready", workerId: slot.id });
        return;
      case "started":
        return this.onStarted(slot, message);
      case "progress": {
        const task = slot.tasks.get(message.taskId);
        this.emit({ type: "task_progress", taskId: message.taskId, percent: message.percent, agentId: task?.agentId, attempt: task?.attempt });
        return;
      }
      case "completed":
      case "failed":
      case "cancelled":
      case "timed_out":
      case "released": {
        const task = slot.tasks.get(message.taskId) ?? null;
        if (task) this.forget(slot, task);
        this.recordEnd(message, refOf(task, slot.id, message.taskId));
        this.emit({
          type: "task_finished",
          taskId: message.taskId,
          outcome: message.type,
          workerId: slot.id,
          agentId: task?.agentId,
          attempt: task?.attempt,
          status: statusAfter(message),
        });
        return;
      }
      case "drained":
        slot.drained = true;
        this.changes.changed();
        this.emit({ type: "worker_drained", workerId: slot.id });
        return;
      case "deferred":
        this.metrics.tasksDeferred.inc(message.count);
        return;
      case "log":
        this.options.logger[message.level]({ worker_id: slot.id, ...message.fields }, message.msg);
        return;
      default:
        assertNever(message);
    }
  }

  private onStarted(slot: Slot, message: Extract<WorkerMessage, { type: "started" }>) {
    const now = performance.now();
    const task: RunningTask = {
      taskId: message.taskId,
      agentId: message.agentId,
      attempt: message.attempt,
      priority: message.priority,
      leaseToken: message.leaseToken,
      startedAt: now,
      busyAccruedAt: now,
    };
    slot.tasks.set(task.taskId, task);
    this.clock.startLimit(task.leaseToken, message.timeoutMs, () => this.stopTask(slot, task, "timeout"));
    this.telemetry.started({
      task_id: task.taskId,
      agent_id: task.agentId,
      worker_id: slot.id,
      attempt: task.attempt,
      priority: task.priority,
      wait_ms: Math.round(message.waitMs),
    });
    this.emit({ type: "task_started", taskId: task.taskId, workerId: slot.id, agentId: task.agentId, attempt: task.attempt });
    // A cancel that arrived between the claim and this message.
    if (this.earlyCancels.delete(task.taskId)) this.stopTask(slot, task, "cancelled");
    // Claimed while the drain was stopping everything: it is handed back as well.
    else if (this.handingBack) this.stopTask(slot, task, "shutdown");
  }

  /** Counts and logs how a task left an actor: exactly what was written (by the actor, or the API for a cancel). */
  private recordEnd(message: Extract<WorkerMessage, { type: "completed" | "failed" | "cancelled" | "timed_out" | "released" }>, ref: EndRef) {
    const t = this.telemetry;
    switch (message.type) {
      case "completed":
        return t.finished({ ...ref, outcome: "completed" });
      case "failed":
        return t.finished({ ...ref, outcome: "failed", error: message.error });
      case "cancelled":
        // The API's cancel wrote, counted and logged `cancelled`; the actor only stopped.
        return;
      case "timed_out":
        return t.finished({ ...ref, outcome: "timeout" });
      case "released":
        switch (message.status) {
          case "pending":
            return message.reason === "shutdown" ? t.handedBack(ref) : t.retried({ ...ref, reason: "connection_lost" });
          case "failed":
            return t.finished({ ...ref, outcome: "failed", reason: message.reason });
          case "cancelled":
            return t.finished({ ...ref, outcome: "cancelled", reason: message.reason }, "running");
          case "unchanged":
            return t.released({ ...ref, reason: message.reason });
          default:
            return assertNever(message.status);
        }
      default:
        return assertNever(message);
    }
  }

  private forget(slot: Slot, task: RunningTask) {
    this.accrueBusy(task);
    this.clock.clear(task.leaseToken);
    slot.tasks.delete(task.taskId);
    this.changes.changed();
  }

  /** Asks the actor to stop a task; past the grace period, its thread is terminated and replaced. */
  stopTask(slot: Slot, task: RunningTask, reason: StopReason) {
    if (task.stopping || slot.tasks.get(task.taskId) !== task) return;
    task.stopping = reason;
    this.pool.post(slot, { type: "cancel", taskId: task.taskId, reason });
    this.clock.startGrace(task.leaseToken, this.options.config.cancelGraceMs, () => {
      if (slot.tasks.get(task.taskId) !== task || slot.retiring) return;
      this.options.logger.warn(
        { task_id: task.taskId, worker_id: slot.id, reason, siblings: slot.tasks.size - 1 },
        "actor ignored the stop request; terminating its thread",
      );
      this.pool.retire(slot);
    });
  }

  private relayCancel(taskId: string) {
    for (const slot of this.pool.live()) {
      const task = slot.tasks.get(taskId);
      if (task) return this.stopTask(slot, task, "cancelled");
    }
    // Maybe claimed here and its `started` message is still on its way.
    const now = Date.now();
    for (const [id, until] of this.earlyCancels) if (until < now) this.earlyCancels.delete(id);
    this.earlyCancels.set(taskId, now + EARLY_CANCEL_MS);
  }

  /**
   * Every task whose lease the renewal missed is stopped. Only a real loss is a warning: a lease
   * also goes when the task ends (its settle committed while the renewal was in flight; its
   * ending's message is on the way) or is cancelled (the cancel's message is on the way).
   */
  private leasesLost(lost: Map<string, TaskStatus | null>) {
    for (const { slot, task } of this.allTasks()) {
      if (!lost.has(task.leaseToken)) continue;
      const status = lost.get(task.leaseToken) ?? null;
      const ref = { task_id: task.taskId, worker_id: slot.id, status };
      if (status === "cancelled") this.options.logger.info(ref, "lease gone: the task was cancelled; stopping it");
      else if (status !== null && isTerminal(status)) this.options.logger.debug(ref, "lease gone: the task has just ended");
      else this.options.logger.warn(ref, "lease lost; stopping the task");
      this.stopTask(slot, task, "lease_lost");
    }
  }

  /**
   * A thread closed with tasks on it. A task we had asked to stop ends as that stop says; the
   * others were interrupted: handed back with their attempt refunded when we terminated the
   * thread (a sibling ignored its stop), or retried as a lost attempt when it crashed (we
   * cannot tell which task crashed it). One settle statement for all of them.
   */
  private async settleDead(slot: Slot, code: number, crashed: boolean) {
    const tasks = [...slot.tasks.values()];
    for (const task of tasks) this.forget(slot, task);
    if (tasks.length === 0) return;
    const decided = tasks.map((task) => {
      const stop: Stop = task.stopping
        ? { how: "stopped", reason: task.stopping }
        : crashed
          ? { how: "thread_crashed", code }
          : { how: "sibling_terminated" };
      return { task, stop, ending: endingFor(stop) };
    });
    const toWrite = decided.flatMap(({ task, ending }) => (ending ? [{ taskId: task.taskId, leaseToken: task.leaseToken, ending }] : []));
    const written = await withDeadline(settleTasks(this.options.database.db, toWrite), SETTLE_DEAD_MS);
    const back = [...written.values()].filter((s) => s.status === "pending");
    await this.dispatcher
      .dispatch(back.map((s) => ({ taskId: s.taskId, priority: s.priority, score: Date.parse(s.createdAt) })))
      .catch((error) => this.options.logger.warn({ err: error }, "redispatch failed; the reconciler will do it"));
    await this.releaseParked(tasks.map((t) => t.agentId));
    // A task whose ending the thread committed just before it died (its message never came).
    const unwritten = decided.filter(({ task, ending }) => ending && !written.has(task.leaseToken));
    const ended = await withDeadline(
      endedByHolder(this.options.database.db, unwritten.map(({ task }) => ({ taskId: task.taskId, owner: slot.id, attempt: task.attempt }))),
      SETTLE_DEAD_MS,
    ).catch(() => new Map<string, { status: TaskStatus; error: string | null }>());
    for (const { task, stop, ending } of decided) {
      const own = ended.get(task.taskId);
      const settled = ending ? (written.get(task.leaseToken) ?? null) : null;
      this.recordDead(slot, task, stop, settled ?? (own ? { ...own, attempt: task.attempt } : null), own !== undefined);
    }
  }

  /**
   * The places of a dead thread's tasks are free: agents with max_concurrent_refreshes may have
   * tasks parked (src/queue/parking.ts), which the thread's own endings would have released. One
   * release per task; for an agent without a limit the park is empty and nothing moves.
   */
  private async releaseParked(agentIds: string[]) {
    const freed = new Map<string, number>();
    for (const agentId of agentIds) freed.set(agentId, (freed.get(agentId) ?? 0) + 1);
    await Promise.all([...freed].map(([agentId, n]) => this.dispatcher.parking.release(agentId, n))).catch((error) =>
      this.options.logger.warn({ err: error }, "releasing parked tasks failed; the reconciler will"),
    );
  }

  /** `byThread`: the thread itself committed this ending before it died. */
  private recordDead(slot: Slot, task: RunningTask, stop: Stop, settled: Pick<Settled, "status" | "error" | "attempt"> | null, byThread = false) {
    const ref = { ...refOf(task, slot.id, task.taskId), reason: byThread ? "ended before its thread died" : "thread terminated" };
    const t = this.telemetry;
    let outcome: SupervisorTaskOutcome = "released";
    const cancelled = stop.how === "stopped" && stop.reason === "cancelled";
    if (cancelled) outcome = "cancelled"; // counted by the API's cancel
    else if (!settled) t.released({ ...ref, reason: "lease_lost" });
    else if (settled.status === "completed") {
      outcome = "completed";
      t.finished({ ...ref, outcome: "completed" });
    } else if (settled.status === "timeout") {
      outcome = "timed_out";
      t.finished({ ...ref, outcome: "timeout" });
    } else if (settled.status === "failed") {
      outcome = "failed";
      t.finished({ ...ref, outcome: "failed", error: settled.error });
    } else if (settled.status === "pending") {
      if (stop.how === "thread_crashed") t.retried({ ...ref, reason: "thread_crash", error: settled.error ?? undefined });
      else t.handedBack(ref);
    }
    this.emit({
      type: "task_finished",
      taskId: task.taskId,
      outcome,
      workerId: "supervisor",
      agentId: task.agentId,
      attempt: settled?.attempt ?? task.attempt,
      status: cancelled ? "cancelled" : (settled?.status ?? null),
    });
  }

  /**
   * Graceful stop: take no new tasks, let running ones finish until the drain deadline, hand
   * the rest back to the queue, then end every thread. Bounded by the deadline plus the grace
   * period (and the settle of what the threads still held) whatever Redis and PostgreSQL do.
   */
  async stop(deadlineMs = this.options.config.drainDeadlineMs): Promise<void> {
    if (this.stopped || this.draining) return;
    this.draining = true;
    const { logger } = this.options;
    logger.info({ supervisor: this.id, deadlineMs }, "draining");
    await drain({
      pool: this.pool,
      changes: this.changes,
      deadlineMs,
      graceMs: this.options.config.cancelGraceMs,
      stopAll: () => {
        this.handingBack = true;
        for (const { slot, task } of this.allTasks()) this.stopTask(slot, task, "shutdown");
      },
      markStopped: () => {
        this.stopped = true;
        this.leases.stop();
        for (const { task } of this.allTasks()) task.stopping ??= "shutdown";
      },
      settleBoundMs: SETTLE_DEAD_MS + 1000,
    });
    this.clock.clearAll();
    // A stopped supervisor reports no worker gauges (unless another one has plugged its own in since).
    const sources = this.metrics.sources;
    if (sources.workers === this.metricSources.workers) {
      sources.workers = undefined;
      sources.accrueBusySeconds = undefined;
    }
    // Both on Redis, at once and bounded: with Redis down, the cancel bus and the heartbeat entry lapse on their own.
    await withDeadline(Promise.allSettled([this.unsubscribe?.() ?? Promise.resolve(), this.heartbeat.stop()]), 1000).catch(() =>
      logger.warn({ supervisor: this.id }, "Redis did not answer the unsubscribe / capacity withdrawal; its entry lapses"),
    );
    liveSupervisors.delete(this);
    logger.info({ supervisor: this.id }, "supervisor stopped");
  }
}

type EndRef = TaskRef & { worker_id: string; duration_ms?: number };

function refOf(task: RunningTask | null, workerId: string, taskId: string): EndRef {
  return {
    task_id: taskId,
    agent_id: task?.agentId,
    worker_id: workerId,
    attempt: task?.attempt,
    priority: task?.priority as Priority | undefined,
    duration_ms: task ? Math.round(performance.now() - task.startedAt) : undefined,
  };
}

/** Rejects when `promise` has not settled within `ms`. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

type SupervisorTaskOutcome = "completed" | "failed" | "cancelled" | "timed_out" | "released";

/** The task's status once an actor's message says it left (null: the actor wrote nothing). */
function statusAfter(message: Extract<WorkerMessage, { type: "completed" | "failed" | "cancelled" | "timed_out" | "released" }>): TaskStatus | null {
  switch (message.type) {
    case "completed":
    case "failed":
    case "cancelled":
      return message.type;
    case "timed_out":
      return "timeout";
    case "released":
      return message.status === "unchanged" ? null : message.status;
    default:
      return assertNever(message);
  }
}

export type SupervisorEvent =
  | { type: "worker_ready"; workerId: string }
  | { type: "worker_crashed"; workerId: string; code: number }
  | { type: "worker_replaced"; workerId: string }
  | { type: "worker_drained"; workerId: string }
  | { type: "task_started"; taskId: string; workerId: string; agentId: string; attempt: number }
  /** agentId and attempt are absent when the task is not (or no longer) known to be on that thread. */
  | { type: "task_progress"; taskId: string; percent: number; agentId?: string; attempt?: number }
  /**
   * `status`: the task's status in PostgreSQL after this ending, as written by the actor, the
   * supervisor or (`cancelled`) the API's DELETE; null when nothing was written (a lost lease).
   */
  | { type: "task_finished"; taskId: string; outcome: SupervisorTaskOutcome; workerId: string; agentId?: string; attempt?: number; status: TaskStatus | null };
