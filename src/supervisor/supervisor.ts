/**
 * The supervisor: owns N long-lived worker actor threads.
 *
 *  - spawns them one by one with a ready handshake (staggered start),
 *  - replaces a crashed thread (restart intensity limit, then gives up loudly)
 *    and puts the task it held back in the queue (or fails it after max attempts),
 *  - owns the clock: a task past its time limit is told to stop, and its thread
 *    terminated if it does not within the grace period,
 *  - relays cancels heard on Redis pub/sub to the thread running the task,
 *  - renews the leases of running tasks,
 *  - drains on stop: no new tasks, running ones finish until the deadline,
 *    the rest are handed back.
 */
import type Redis from "ioredis";
import type { Logger } from "pino";
import { randomBytes } from "node:crypto";
import type { Database } from "../db/client.ts";
import { endTask } from "../db/tasks/completions.ts";
import { renewLeases } from "../db/tasks/leases.ts";
import { requeueTask } from "../db/tasks/recovery.ts";
import { Dispatcher } from "../queue/dispatch.ts";
import { queueKeys, type QueueKeys } from "../queue/keys.ts";
import {
  assertNever,
  isWorkerMessage,
  type CancelReason,
  type SupervisorMessage,
  type WorkerMessage,
  type WorkerSettings,
} from "../protocol/messages.ts";
import { RestartBudget } from "./restartPolicy.ts";
import type { Config } from "../config.ts";
import type { Priority } from "../core/tasks.ts";
import { createMetrics, type Metrics, type MetricSources } from "../metrics/registry.ts";
import { TaskTelemetry } from "../metrics/taskEvents.ts";

export const DEFAULT_WORKER_URL = new URL("../../workers/main.ts", import.meta.url).href;

export interface SupervisorOptions {
  config: Config;
  database: Database;
  /** For commands (dispatch, capacity). */
  redis: Redis;
  /** A connection of its own for SUBSCRIBE (a subscribed connection runs no other commands). */
  subscriber: Redis;
  logger: Logger;
  workers: number;
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

interface RunningTask {
  taskId: string;
  agentId: string;
  attempt: number;
  priority: Priority;
  leaseToken: string;
  startedAt: number;
  /** Busy time up to here is already in agentq_worker_busy_seconds_total. */
  busyAccruedAt: number;
  timeoutTimer: ReturnType<typeof setTimeout>;
  /** Set once the supervisor has asked the task to stop. */
  stopping?: CancelReason;
  graceTimer?: ReturnType<typeof setTimeout>;
}

interface Slot {
  index: number;
  id: string;
  worker: Worker;
  ready: boolean;
  task: RunningTask | null;
  /** True once we terminate it on purpose (its close is not a crash). */
  retiring: boolean;
  drained: boolean;
  closed: Promise<number>;
}

const STATUS_FOR: Record<CancelReason, "cancelled" | "timeout" | null> = {
  cancelled: "cancelled",
  timeout: "timeout",
  shutdown: null,
  lease_lost: null,
};

export class Supervisor {
  readonly id: string;
  private readonly slots: (Slot | null)[];
  private readonly keys: QueueKeys;
  private readonly dispatcher: Dispatcher;
  private readonly budget: RestartBudget;
  private readonly settings: WorkerSettings;
  private leaseTimer: ReturnType<typeof setInterval> | undefined;
  private draining = false;
  private stopped = false;
  private spawnSeq = 0;
  private readonly listeners = new Set<(event: SupervisorEvent) => void>();
  readonly metrics: Metrics;
  private readonly telemetry: TaskTelemetry;
  private readonly metricSources: MetricSources;

  constructor(private readonly options: SupervisorOptions) {
    const c = options.config;
    this.metrics = options.metrics ?? createMetrics({}, { processMetrics: false });
    this.telemetry = new TaskTelemetry(this.metrics, options.logger);
    this.metricSources = { workers: () => this.workerCounts(), accrueBusySeconds: () => this.accrueBusy() };
    this.id = options.id ?? `sup-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.slots = Array.from({ length: options.workers }, () => null);
    this.keys = queueKeys(c.redisPrefix);
    this.dispatcher = new Dispatcher(options.redis, this.keys);
    this.budget = new RestartBudget({ maxRestarts: c.restartMax, windowMs: c.restartWindowMs });
    this.settings = {
      databaseUrl: c.databaseUrl,
      redisUrl: c.redisUrl,
      redisPrefix: c.redisPrefix,
      confidenceThreshold: c.confidenceThreshold,
      defaultTargetDocuments: c.defaultTargetDocuments,
      leaseMs: c.leaseMs,
      popTimeoutSeconds: options.popTimeoutSeconds ?? 1,
    };
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
    const { subscriber, logger } = this.options;
    subscriber.on("message", (channel: string, taskId: string) => {
      if (channel === this.keys.cancelChannel) this.relayCancel(taskId);
    });
    await subscriber.subscribe(this.keys.cancelChannel);
    Object.assign(this.metrics.sources, this.metricSources);
    for (let i = 0; i < this.slots.length; i++) {
      await this.spawn(i);
      if (this.options.spawnStaggerMs) await Bun.sleep(this.options.spawnStaggerMs);
    }
    const every = Math.max(50, Math.floor(this.options.config.leaseMs / 3));
    this.leaseTimer = setInterval(() => void this.renew(), every);
    await this.publishCapacity();
    logger.info({ supervisor: this.id, workers: this.slots.length }, "supervisor started");
  }

  /** Workers and busy workers right now. */
  stats() {
    const live = this.slots.filter((s): s is Slot => s !== null && s.ready);
    return { workers: live.length, busy: live.filter((s) => s.task !== null).length };
  }

  /** For the worker gauges: live threads (ready ones) and those running a task. */
  private workerCounts() {
    const { workers, busy } = this.stats();
    return { total: workers, busy };
  }

  /** Adds the time each busy thread ran since the last call to agentq_worker_busy_seconds_total. */
  private accrueBusy(slot?: Slot) {
    const now = performance.now();
    for (const s of slot ? [slot] : this.slots) {
      if (!s?.task) continue;
      this.metrics.workerBusySeconds.inc(Math.max(0, now - s.task.busyAccruedAt) / 1000);
      s.task.busyAccruedAt = now;
    }
  }

  /** The task each busy slot runs (tests use it to pick a victim). */
  runningTasks(): string[] {
    return this.slots.flatMap((s) => (s?.task ? [s.task.taskId] : []));
  }

  private spawn(index: number): Promise<void> {
    const id = `${this.id}-w${index}-${this.spawnSeq++}`;
    const worker = new Worker(this.options.workerUrl ?? DEFAULT_WORKER_URL);
    let resolveClosed!: (code: number) => void;
    const slot: Slot = {
      index,
      id,
      worker,
      ready: false,
      task: null,
      retiring: false,
      drained: false,
      closed: new Promise<number>((r) => (resolveClosed = r)),
    };
    this.slots[index] = slot;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`worker ${id} sent no ready within ${this.options.readyTimeoutMs ?? 10_000} ms`)),
        this.options.readyTimeoutMs ?? 10_000,
      );
      worker.addEventListener("message", (event: MessageEvent) => {
        const message: unknown = event.data;
        if (!isWorkerMessage(message)) {
          this.options.logger.warn({ worker_id: id }, "ignoring malformed worker message");
          return;
        }
        if (message.type === "ready") {
          clearTimeout(timer);
          slot.ready = true;
          resolve();
        }
        this.onMessage(slot, message);
      });
      worker.addEventListener("close", (event: Event) => {
        clearTimeout(timer);
        const code = (event as CloseEvent).code ?? 0;
        if (!slot.ready) reject(new Error(`worker ${id} exited before it was ready (code ${code})`));
        // `closed` resolves once the task the thread held is settled, so stop() can wait for it.
        void this.onClose(slot, code).finally(() => resolveClosed(code));
      });
      worker.addEventListener("error", (event: Event) => {
        this.options.logger.error({ worker_id: id, err: (event as ErrorEvent).message }, "worker thread error");
      });
    });
    this.post(slot, { type: "init", workerId: id, settings: this.settings });
    return ready;
  }

  private post(slot: Slot, message: SupervisorMessage) {
    slot.worker.postMessage(message);
  }

  private onMessage(slot: Slot, message: WorkerMessage) {
    const { logger } = this.options;
    switch (message.type) {
      case "ready":
        this.emit({ type: "worker_ready", workerId: slot.id });
        return;
      case "started": {
        const timeoutTimer = setTimeout(() => this.stopTask(slot, message.taskId, "timeout"), message.timeoutMs);
        const now = performance.now();
        slot.task = {
          taskId: message.taskId,
          agentId: message.agentId,
          attempt: message.attempt,
          priority: message.priority,
          leaseToken: message.leaseToken,
          startedAt: now,
          busyAccruedAt: now,
          timeoutTimer,
        };
        this.telemetry.started({
          task_id: message.taskId,
          agent_id: message.agentId,
          worker_id: slot.id,
          attempt: message.attempt,
          priority: message.priority,
          wait_ms: Math.round(message.waitMs),
        });
        this.emit({ type: "task_started", taskId: message.taskId, workerId: slot.id });
        return;
      }
      case "progress":
        this.emit({ type: "task_progress", taskId: message.taskId, percent: message.percent });
        return;
      case "completed":
      case "failed":
      case "cancelled":
      case "timed_out":
      case "released": {
        const task = slot.task?.taskId === message.taskId ? slot.task : null;
        if (task) this.clearTask(slot);
        this.recordEnd(message, {
          task_id: message.taskId,
          agent_id: task?.agentId,
          worker_id: slot.id,
          attempt: task?.attempt,
          priority: task?.priority,
          duration_ms: task ? Math.round(performance.now() - task.startedAt) : undefined,
        });
        this.emit({ type: "task_finished", taskId: message.taskId, outcome: message.type, workerId: slot.id });
        return;
      }
      case "drained":
        slot.drained = true;
        this.emit({ type: "worker_drained", workerId: slot.id });
        return;
      case "log":
        logger[message.level]({ worker_id: slot.id, ...message.fields }, message.msg);
        return;
      default:
        assertNever(message);
    }
  }

  /** Counts and logs how a task left an actor: exactly what the actor's fenced UPDATE wrote. */
  private recordEnd(
    message: Extract<WorkerMessage, { type: "completed" | "failed" | "cancelled" | "timed_out" | "released" }>,
    ref: { task_id: string; agent_id?: string; worker_id: string; attempt?: number; priority?: Priority; duration_ms?: number },
  ) {
    const t = this.telemetry;
    switch (message.type) {
      case "completed":
        return t.finished({ ...ref, outcome: "completed" });
      case "failed":
        return t.finished({ ...ref, outcome: "failed", error: message.error });
      case "cancelled":
        return t.finished({ ...ref, outcome: "cancelled" }, "running");
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

  private clearTask(slot: Slot) {
    if (!slot.task) return;
    this.accrueBusy(slot);
    clearTimeout(slot.task.timeoutTimer);
    clearTimeout(slot.task.graceTimer);
    slot.task = null;
  }

  /** Asks the actor to stop its task; past the grace period, its thread is terminated and replaced. */
  private stopTask(slot: Slot, taskId: string, reason: CancelReason) {
    const task = slot.task;
    if (!task || task.taskId !== taskId || task.stopping) return;
    task.stopping = reason;
    this.post(slot, { type: "cancel", taskId, reason });
    task.graceTimer = setTimeout(() => {
      if (slot.task?.taskId !== taskId) return;
      this.options.logger.warn({ task_id: taskId, worker_id: slot.id, reason }, "actor ignored the stop request; terminating its thread");
      slot.retiring = true;
      slot.worker.terminate();
    }, this.options.config.cancelGraceMs);
  }

  private relayCancel(taskId: string) {
    for (const slot of this.slots) if (slot?.task?.taskId === taskId) this.stopTask(slot, taskId, "cancelled");
  }

  private async onClose(slot: Slot, code: number) {
    const { logger } = this.options;
    const task = slot.task;
    this.clearTask(slot);
    if (this.slots[slot.index] === slot) this.slots[slot.index] = null;
    if (task) {
      try {
        await this.settleOrphan(task, slot.id, slot.retiring ? undefined : `worker thread crashed (exit code ${code})`);
      } catch (error) {
        // PostgreSQL unreachable: the lease lapses and the reconciler retries the task.
        logger.error({ task_id: task.taskId, worker_id: slot.id, err: error }, "could not settle the task of a dead thread");
      }
    }
    if (this.stopped || (this.draining && !task)) return;
    const crashed = !slot.retiring;
    if (crashed) {
      logger.error({ worker_id: slot.id, code, task_id: task?.taskId }, "worker thread died");
      this.emit({ type: "worker_crashed", workerId: slot.id, code });
      if (!this.budget.allow(Date.now())) {
        const error = new Error(
          `restart intensity exceeded: more than ${this.options.config.restartMax} worker crashes in ${this.options.config.restartWindowMs} ms`,
        );
        logger.fatal({ supervisor: this.id }, error.message);
        this.options.onFatal?.(error);
        return;
      }
    }
    if (this.draining) return;
    try {
      await this.spawn(slot.index);
      this.metrics.workerRestarts.inc({ reason: crashed ? "crash" : "unresponsive" });
      this.emit({ type: "worker_replaced", workerId: slot.id });
    } catch (error) {
      logger.error({ err: error }, "could not replace a worker thread");
    }
  }

  /**
   * The thread that held `task` is gone. If we stopped it for a cancel or a
   * timeout, the task ends with that status; if it crashed (or was handed back
   * on shutdown) it goes back to the queue, or fails after its last attempt.
   */
  private async settleOrphan(task: RunningTask, workerId: string, crashReason: string | undefined) {
    const db = this.options.database.db;
    const ref = {
      task_id: task.taskId,
      agent_id: task.agentId,
      worker_id: workerId,
      attempt: task.attempt,
      priority: task.priority,
      duration_ms: Math.round(performance.now() - task.startedAt),
    };
    const status = task.stopping ? STATUS_FOR[task.stopping] : null;
    if (status) {
      const ended = await endTask(db, task.taskId, task.leaseToken, status, status === "timeout" ? "task exceeded its time limit" : null);
      if (ended) this.telemetry.finished({ ...ref, outcome: status, reason: "thread terminated" }, "running");
      else this.telemetry.released({ ...ref, reason: "lease_lost" });
      this.emit({ type: "task_finished", taskId: task.taskId, outcome: status === "timeout" ? "timed_out" : "cancelled", workerId: "supervisor" });
      return;
    }
    if (task.stopping === "lease_lost") {
      // Not ours any more (deleted, or retried elsewhere after our lease lapsed): write nothing.
      this.telemetry.released({ ...ref, reason: "lease_lost" });
      this.emit({ type: "task_finished", taskId: task.taskId, outcome: "released", workerId: "supervisor" });
      return;
    }
    const refund = task.stopping === "shutdown";
    const back = await requeueTask(db, task.taskId, task.leaseToken, crashReason ?? "handed back on shutdown", refund);
    if (back?.status === "pending")
      await this.dispatcher.dispatch([{ taskId: back.task_id, priority: back.priority, score: Date.parse(back.created_at) }]);
    if (!back) this.telemetry.released({ ...ref, reason: "lease_lost" });
    else if (back.status === "pending") {
      if (refund) this.telemetry.handedBack(ref);
      else this.telemetry.retried({ ...ref, reason: "thread_crash", error: crashReason });
    } else if (back.status === "failed") this.telemetry.finished({ ...ref, outcome: "failed", error: `gave up after attempts: ${crashReason}` });
    else if (back.status === "cancelled") this.telemetry.finished({ ...ref, outcome: "cancelled" }, "running");
  }

  private async renew() {
    const leases = this.slots.flatMap((s) => (s?.task ? [{ taskId: s.task.taskId, leaseToken: s.task.leaseToken }] : []));
    try {
      const { renewedTokens, cancelRequested } = await renewLeases(this.options.database.db, leases, this.options.config.leaseMs);
      // A cancel whose pub/sub message we missed (reconnect) is caught here.
      for (const taskId of cancelRequested) this.relayCancel(taskId);
      // A lease that matched no row is lost: the task was deleted (with its agent) or, after our
      // lease lapsed, taken by another supervisor. Stop the work now rather than at its end,
      // when its fenced completion would be refused anyway. (A task that just ended on its own
      // matches no row either; its actor has already moved on and ignores the stop.)
      const asked = new Set(leases.map((l) => l.leaseToken));
      const kept = new Set(renewedTokens);
      for (const slot of this.slots)
        if (slot?.task && asked.has(slot.task.leaseToken) && !kept.has(slot.task.leaseToken)) {
          this.options.logger.warn({ task_id: slot.task.taskId, worker_id: slot.id }, "lease lost; stopping the task");
          this.stopTask(slot, slot.task.taskId, "lease_lost");
        }
      await this.publishCapacity();
    } catch (error) {
      this.options.logger.warn({ err: error }, "lease renewal failed; retrying");
    }
  }

  /** Advertises this supervisor's workers so the API can estimate completion times. */
  private async publishCapacity() {
    const { workers, busy } = this.stats();
    const expires = Date.now() + 3 * Math.max(50, Math.floor(this.options.config.leaseMs / 3)) + 1000;
    await this.options.redis.hset(this.keys.capacity, this.id, JSON.stringify({ workers, busy, expires }));
  }

  /**
   * Graceful stop: take no new tasks, let running ones finish until the drain
   * deadline, hand the rest back to the queue, then end every thread.
   */
  async stop(deadlineMs = this.options.config.drainDeadlineMs): Promise<void> {
    if (this.stopped) return;
    this.draining = true;
    const { logger } = this.options;
    logger.info({ supervisor: this.id, deadlineMs }, "draining");
    const live = () => this.slots.filter((s): s is Slot => s !== null);
    for (const slot of live()) this.post(slot, { type: "drain" });
    const deadline = Date.now() + deadlineMs;
    while (Date.now() < deadline && live().some((s) => !s.drained)) await Bun.sleep(20);
    for (const slot of live()) if (slot.task) this.stopTask(slot, slot.task.taskId, "shutdown");
    const graceEnd = Date.now() + this.options.config.cancelGraceMs + 100;
    while (Date.now() < graceEnd && live().some((s) => s.task !== null)) await Bun.sleep(20);
    this.stopped = true;
    clearInterval(this.leaseTimer);
    for (const slot of live()) {
      slot.retiring = true;
      if (slot.task) slot.task.stopping = "shutdown";
      slot.worker.terminate();
    }
    await Promise.all(live().map((s) => s.closed));
    // A stopped supervisor reports no worker gauges (unless another one has plugged its own in since).
    const sources = this.metrics.sources;
    if (sources.workers === this.metricSources.workers) {
      sources.workers = undefined;
      sources.accrueBusySeconds = undefined;
    }
    await this.options.subscriber.unsubscribe(this.keys.cancelChannel).catch(() => {});
    await this.options.redis.hdel(this.keys.capacity, this.id).catch(() => {});
    logger.info({ supervisor: this.id }, "supervisor stopped");
  }
}

export type SupervisorEvent =
  | { type: "worker_ready"; workerId: string }
  | { type: "worker_crashed"; workerId: string; code: number }
  | { type: "worker_replaced"; workerId: string }
  | { type: "worker_drained"; workerId: string }
  | { type: "task_started"; taskId: string; workerId: string }
  | { type: "task_progress"; taskId: string; percent: number }
  | { type: "task_finished"; taskId: string; outcome: "completed" | "failed" | "cancelled" | "timed_out" | "released"; workerId: string };
