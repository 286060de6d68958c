/**
 * A worker actor: one Bun Worker thread that pulls task ids from Redis
 * (blocking pop, highest priority first), claims each in PostgreSQL, runs it
 * with an AbortSignal, and tells the supervisor what happens by postMessage.
 * It runs one task at a time; the supervisor owns the clock (timeouts) and
 * relays cancels.
 */
import Redis from "ioredis";
import { openDatabase, type Database } from "../src/db/client.ts";
import { claimTask } from "../src/db/tasks/claims.ts";
import { completeTask, endTask } from "../src/db/tasks/completions.ts";
import { recordProgress } from "../src/db/tasks/leases.ts";
import { requeueTask } from "../src/db/tasks/recovery.ts";
import { queueKeys, type QueueKeys } from "../src/queue/keys.ts";
import { popNext } from "../src/queue/dispatch.ts";
import { Dispatcher } from "../src/queue/dispatch.ts";
import {
  assertNever,
  isSupervisorMessage,
  type CancelReason,
  type ReleasedStatus,
  type SupervisorMessage,
  type WorkerMessage,
  type WorkerSettings,
} from "../src/protocol/messages.ts";
import type { TaskHandler } from "./handlers/types.ts";
import type { CoverageResult } from "../src/coverage/meter.ts";
import { isTransientDbError } from "../src/db/errors.ts";

declare const self: Worker;

/** Recent run times kept for completion estimates. */
const RUNTIME_SAMPLES = 100;
/** Progress reaches PostgreSQL at most this often per task (the supervisor hears every step). */
const PROGRESS_WRITE_INTERVAL_MS = 100;

interface Running {
  taskId: string;
  leaseToken: string;
  controller: AbortController;
}

class Actor {
  private draining = false;
  private running: Running | null = null;
  private database: Database;
  private readonly redis: Redis;
  private readonly blocking: Redis;
  private readonly keys: QueueKeys;
  private readonly dispatcher: Dispatcher;

  constructor(
    private readonly workerId: string,
    private readonly settings: WorkerSettings,
    private readonly handler: TaskHandler,
  ) {
    this.database = this.openPool();
    this.redis = new Redis(settings.redisUrl, { maxRetriesPerRequest: null });
    this.blocking = new Redis(settings.redisUrl, { maxRetriesPerRequest: null });
    this.keys = queueKeys(settings.redisPrefix);
    this.dispatcher = new Dispatcher(this.redis, this.keys);
    for (const r of [this.redis, this.blocking]) r.on("error", () => {}); // reconnects by itself; failures surface in calls
  }

  private openPool(): Database {
    return openDatabase(this.settings.databaseUrl, { max: 2, applicationName: `agentq-worker-${this.workerId}` });
  }

  /**
   * After a lost database connection the pool is replaced before its next use.
   * postgres.js 3.4.9 as published can leave a connection whose backend died unable to
   * send anything again, and statements issued while it closes may never settle;
   * patches/postgres@3.4.9.patch fixes that (test/integration/postgres-driver.test.ts).
   * The replacement stays as a second line of defence for the one place where a stuck
   * statement costs most: the supervisor keeps renewing the lease, so the task would
   * sit `running`. A fresh pool carries no state from the dead connections.
   */
  private replacePool() {
    const old = this.database;
    this.database = this.openPool();
    void old.sql.end({ timeout: 0 }).catch(() => {});
  }

  send(message: WorkerMessage) {
    self.postMessage(message);
  }

  log(level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) {
    this.send({ type: "log", level, msg, fields: { worker_id: this.workerId, ...fields } });
  }

  handle(message: SupervisorMessage) {
    switch (message.type) {
      case "init":
        return; // only the first init matters; see bootstrap below
      case "cancel":
        if (this.running?.taskId === message.taskId) this.running.controller.abort(message.reason);
        return;
      case "drain":
        this.draining = true;
        // Wake the blocking pop now instead of at its timeout.
        if (!this.running) this.blocking.disconnect();
        return;
      default:
        assertNever(message);
    }
  }

  async loop() {
    this.send({ type: "ready", workerId: this.workerId });
    while (!this.draining) {
      let next: Awaited<ReturnType<typeof popNext>> = null;
      try {
        next = await popNext(this.blocking, this.keys, this.settings.popTimeoutSeconds);
      } catch (error) {
        if (this.draining) break;
        this.log("warn", "redis pop failed; retrying", { err: String(error) });
        await Bun.sleep(250);
        continue;
      }
      if (!next) continue;
      try {
        await this.runOne(next.taskId);
      } catch (error) {
        // Bookkeeping failed (PostgreSQL unreachable, say). The task is no longer
        // ours to manage: its lease lapses and the reconciler retries it.
        this.log("error", "task bookkeeping failed; releasing the task", { task_id: next.taskId, err: String(error) });
        if (isTransientDbError(error)) this.replacePool();
        this.send({ type: "released", taskId: next.taskId, status: "unchanged", reason: "bookkeeping_failed" });
        this.running = null;
        await Bun.sleep(250);
      }
    }
    this.blocking.disconnect();
    this.send({ type: "drained" });
  }

  private async runOne(taskId: string) {
    const claim = await claimTask(this.database.db, taskId, this.workerId, this.settings.leaseMs);
    if (!claim) return; // cancelled, or someone else has it: nothing to do
    const controller = new AbortController();
    this.running = { taskId, leaseToken: claim.leaseToken, controller };
    this.send({
      type: "started",
      taskId,
      agentId: claim.agentId,
      priority: claim.priority,
      leaseToken: claim.leaseToken,
      attempt: claim.attempt,
      timeoutMs: claim.timeoutMs,
      waitMs: claim.waitMs,
    });
    const started = performance.now();
    let lastPercent = 0;
    let lastProgressWrite = started;
    let result: CoverageResult;
    try {
      result = await this.handler({
        taskId,
        agentId: claim.agentId,
        agent: claim.agent,
        attempt: claim.attempt,
        database: this.database,
        settings: this.settings,
        signal: controller.signal,
        progress: async (percent) => {
          if (percent <= lastPercent) return;
          lastPercent = percent;
          this.send({ type: "progress", taskId, percent });
          // Throttled: a short task writes no progress rows at all (completion writes 100).
          const now = performance.now();
          if (now - lastProgressWrite < PROGRESS_WRITE_INTERVAL_MS) return;
          lastProgressWrite = now;
          await recordProgress(this.database.db, taskId, claim.leaseToken, percent);
        },
      });
      if (controller.signal.aborted) throw controller.signal.reason;
    } catch (error) {
      await this.finishAfterError(taskId, claim.leaseToken, controller.signal, error);
      this.running = null;
      return;
    }
    // Errors from here on are bookkeeping errors: loop() releases the task.
    const outcome = await completeTask(this.database.db, taskId, claim.leaseToken, result);
    this.running = null;
    const durationMs = Math.round(performance.now() - started);
    if (outcome === "completed") {
      this.send({ type: "completed", taskId, durationMs });
      // Only feeds completion estimates: losing a sample is fine.
      await this.redis
        .pipeline()
        .lpush(this.keys.runtimes, durationMs)
        .ltrim(this.keys.runtimes, 0, RUNTIME_SAMPLES - 1)
        .exec()
        .catch(() => {});
    } else if (outcome === "cancelled") this.send({ type: "cancelled", taskId });
    else this.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
  }

  private async finishAfterError(taskId: string, leaseToken: string, signal: AbortSignal, error: unknown) {
    const db = this.database.db;
    if (signal.aborted) {
      const reason = signal.reason as CancelReason;
      switch (reason) {
        // Each message says what this actor's fenced UPDATE wrote; nothing written (lease lost) is `released`.
        case "cancelled":
          if (await endTask(db, taskId, leaseToken, "cancelled", null)) this.send({ type: "cancelled", taskId });
          else this.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
          return;
        case "timeout":
          if (await endTask(db, taskId, leaseToken, "timeout", "task exceeded its time limit")) this.send({ type: "timed_out", taskId });
          else this.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
          return;
        case "lease_lost":
          // The row is gone or has another owner: nothing of ours may be written.
          this.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
          return;
        case "shutdown": {
          const back = await requeueTask(db, taskId, leaseToken, "handed back on shutdown", true);
          if (back?.status === "pending") await this.dispatcher.dispatch([{ taskId, priority: back.priority, score: Date.parse(back.created_at) }]);
          this.send({ type: "released", taskId, status: releasedStatus(back), reason: back ? "shutdown" : "lease_lost" });
          return;
        }
        default:
          assertNever(reason);
      }
    }
    const message = error instanceof Error ? error.message : String(error);
    if (isTransientDbError(error)) {
      // The database went away under the task: not the task's fault, so it is retried.
      this.replacePool();
      const back = await requeueTask(this.database.db, taskId, leaseToken, `database connection lost: ${message}`.slice(0, 2000));
      if (back?.status === "pending") await this.dispatcher.dispatch([{ taskId, priority: back.priority, score: Date.parse(back.created_at) }]);
      this.send({ type: "released", taskId, status: releasedStatus(back), reason: back ? "connection_lost" : "lease_lost" });
      return;
    }
    if (await endTask(db, taskId, leaseToken, "failed", message.slice(0, 2000))) this.send({ type: "failed", taskId, error: message.slice(0, 2000) });
    else this.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
  }

  async close() {
    this.redis.disconnect();
    this.blocking.disconnect();
    await this.database.close();
  }
}

/** What a requeue wrote, for the `released` message (null: the lease was lost, nothing written). */
function releasedStatus(back: { status: string } | null): ReleasedStatus {
  if (!back) return "unchanged";
  return back.status === "failed" || back.status === "cancelled" ? back.status : "pending";
}

/** Entry for a worker script: wires the thread's messages to an actor running `handler`. */
export function runActor(handler: TaskHandler) {
  let actor: Actor | null = null;
  self.addEventListener("message", (event: MessageEvent) => {
    const message: unknown = event.data;
    if (!isSupervisorMessage(message)) return;
    if (message.type === "init" && !actor) {
      actor = new Actor(message.workerId, message.settings, handler);
      const a = actor;
      a.loop()
        .then(() => a.close())
        .catch((error) => {
          // An actor that cannot go on dies loudly; the supervisor replaces the thread.
          throw error;
        });
      return;
    }
    actor?.handle(message);
  });
}
