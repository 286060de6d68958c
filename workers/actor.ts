/**
 * A worker actor: runs up to `settings.concurrency` tasks at once. It takes task
 * ids from the Redis priority queues (never more than it has free slots: one
 * blocking pop when it has nothing, then one round trip for the rest), claims
 * them with one fenced UPDATE, runs each with its own AbortSignal, and has their
 * endings group-committed. It tells the supervisor what happens by messages on
 * its port; the supervisor owns the clock (timeouts), relays cancels and renews
 * leases.
 *
 * The port and every dependency are parameters (like graphile-worker's
 * makeNewWorker takes getJob and completeJob), so the same logic runs in a Bun
 * Worker thread (workers/thread.ts) and in a test process.
 */
import type { Claim, ClaimBatch, Deferred } from "../src/db/tasks/claims.ts";
import type { Settled } from "../src/db/tasks/settle.ts";
import type { Database } from "../src/db/client.ts";
import type { Popped } from "../src/queue/pop.ts";
import { endingFor, type Ending, type Stop, type StopReason } from "../src/core/settle.ts";
import { assertNever, type SupervisorMessage, type WorkerMessage, type WorkerSettings } from "../src/protocol/messages.ts";
import type { TaskHandler } from "./handlers/types.ts";
import type { CoverageResult } from "../src/coverage/meter.ts";
import { isTransientDbError } from "../src/db/errors.ts";

/** Progress reaches PostgreSQL at most this often per task (the supervisor hears every step). */
const PROGRESS_WRITE_INTERVAL_MS = 100;
/** Pause after Redis or PostgreSQL failed us, before trying again. */
const BACKOFF_MS = 250;

export interface ActorPort {
  send(message: WorkerMessage): void;
}

/** Everything an actor does outside its own memory. */
export interface ActorDeps {
  /** Priority-ordered pops (src/queue/pop.ts). */
  take(n: number): Promise<Popped[]>;
  waitForOne(timeoutSeconds: number): Promise<Popped | null>;
  /** Wakes a waitForOne at once (drain). */
  interruptWait(): void;
  /**
   * One fenced UPDATE for all the ids (src/db/tasks/claims.ts); ids of an agent at its
   * max_concurrent_refreshes come back deferred, still pending.
   */
  claim(taskIds: string[]): Promise<ClaimBatch>;
  /** Sets deferred ids aside until their agent has room (src/queue/parking.ts). */
  park(tasks: Deferred[]): Promise<void>;
  /** A task of a limited agent ended: one of its parked ids goes back to its queue. */
  releaseParked(agentId: string): Promise<void>;
  /** Group-committed ending (src/tasks/settleBatcher.ts): what was written, or null (nothing). */
  settle(taskId: string, leaseToken: string, ending: Ending): Promise<Settled | null>;
  progress(taskId: string, leaseToken: string, percent: number): Promise<void>;
  /** Small-scope coverage, batched with the actor's other tasks (src/coverage/batchMeter.ts). */
  measureSmallScope(scope: Claim["agent"], signal: AbortSignal): Promise<CoverageResult | null>;
  /** Puts a task that went back to pending into its queue again. */
  redispatch(task: Settled): Promise<void>;
  /** A run time, for the API's completion estimates. */
  recordRuntime(ms: number): void;
  /** The database handlers run their statements on. */
  database(): Database;
  /** The connection died under us: the pool is replaced before its next use. */
  connectionLost(): void;
}

interface RunningTask {
  claim: Claim;
  controller: AbortController;
}

export class Actor {
  /** Tasks whose handler runs: the slots. */
  private readonly running = new Map<string, RunningTask>();
  /**
   * Tasks whose handler is done and whose ending is being written. A slot is free again as soon
   * as its handler returns (River's rule: slots count executing work), so the next batch is
   * claimed and measured while this one's settle statement commits; at most `concurrency` of
   * them wait for a commit (beyond that, no new task is taken).
   */
  private readonly settling = new Set<string>();
  private draining = false;
  /** When this actor last claimed (performance.now()), for the claim cooldown. */
  private lastClaimAt = Number.NEGATIVE_INFINITY;
  /** Resolves the wait for a free slot (or a drain). */
  private wake: (() => void) | null = null;

  constructor(
    private readonly workerId: string,
    private readonly settings: WorkerSettings,
    private readonly handler: TaskHandler,
    private readonly port: ActorPort,
    private readonly deps: ActorDeps,
  ) {}

  /** Tasks running now (ids). */
  runningTasks(): string[] {
    return [...this.running.keys()];
  }

  handle(message: SupervisorMessage) {
    switch (message.type) {
      case "init":
        return; // only the first init matters; the thread entry creates the actor with it
      case "cancel":
        this.running.get(message.taskId)?.controller.abort(message.reason);
        return;
      case "drain":
        this.draining = true;
        // Wake the blocking pop now instead of at its timeout.
        this.deps.interruptWait();
        this.notify();
        return;
      default:
        assertNever(message);
    }
  }

  /** Pulls and runs tasks until drained; resolves once its last task has ended. */
  async run(): Promise<void> {
    this.port.send({ type: "ready", workerId: this.workerId });
    while (!this.draining) {
      if (this.running.size > 0 && (await this.coolDown())) continue;
      const free = this.settings.concurrency - this.running.size;
      if (free <= 0 || this.settling.size > this.settings.concurrency) {
        await this.slotFreed();
        continue;
      }
      let popped: Popped[];
      try {
        popped = await this.pop(free);
      } catch (error) {
        if (this.draining) break;
        this.log("warn", "redis pop failed; retrying", { err: String(error) });
        await Bun.sleep(BACKOFF_MS);
        continue;
      }
      if (popped.length > 0) await this.claimAndStart(popped);
    }
    // Draining: what runs goes on until it ends or the supervisor stops it.
    while (this.running.size > 0 || this.settling.size > 0) await this.slotFreed();
    this.port.send({ type: "drained" });
  }

  /**
   * At most `free` ids: what is queued now (one round trip), else a blocking wait for one. The
   * id a blocking wait returns is claimed at once (the pickup latency at low load); the next
   * pass tops the other slots up.
   */
  private async pop(free: number): Promise<Popped[]> {
    const taken = await this.deps.take(free);
    if (taken.length > 0 || this.draining) return taken;
    const first = await this.deps.waitForOne(this.settings.popTimeoutSeconds);
    return first ? [first] : [];
  }

  private async claimAndStart(popped: Popped[]) {
    this.lastClaimAt = performance.now();
    let batch: ClaimBatch;
    try {
      batch = await this.deps.claim(popped.map((p) => p.taskId));
    } catch (error) {
      // The ids left Redis unclaimed: they are still pending in PostgreSQL, and the
      // reconciler dispatches them again once they are stale.
      this.log("error", "claim failed; the reconciler will dispatch the tasks again", { task_ids: popped.map((p) => p.taskId), err: String(error) });
      if (isTransientDbError(error)) this.deps.connectionLost();
      await Bun.sleep(BACKOFF_MS);
      return;
    }
    // Ids neither claimed nor deferred were cancelled, taken by someone else, or deleted: dropped.
    for (const claim of batch.claims) this.start(claim);
    if (batch.deferred.length > 0) await this.park(batch.deferred);
  }

  /**
   * Ids over their agent's limit leave the priority queues for the agent's park, so this actor
   * does not pop them again and they hold up nobody behind them. If Redis fails here they are in
   * no queue and no park: the reconciler dispatches them again once they are stale.
   */
  private async park(deferred: Deferred[]) {
    this.port.send({ type: "deferred", count: deferred.length });
    try {
      await this.deps.park(deferred);
    } catch (error) {
      this.log("warn", "parking deferred tasks failed; the reconciler will dispatch them again", {
        task_ids: deferred.map((d) => d.taskId),
        err: String(error),
      });
    }
  }

  private start(claim: Claim) {
    const controller = new AbortController();
    this.running.set(claim.taskId, { claim, controller });
    this.port.send({
      type: "started",
      taskId: claim.taskId,
      agentId: claim.agentId,
      priority: claim.priority,
      leaseToken: claim.leaseToken,
      attempt: claim.attempt,
      timeoutMs: claim.timeoutMs,
      waitMs: claim.waitMs,
    });
    void this.runTask(claim, controller.signal).finally(() => {
      this.running.delete(claim.taskId);
      this.settling.delete(claim.taskId);
      this.notify();
      // Its ending is written (or left to the lease): the agent has a place again.
      if (claim.limited)
        this.deps.releaseParked(claim.agentId).catch((error) =>
          this.log("warn", "releasing a parked task failed; the reconciler will", { agent_id: claim.agentId, err: String(error) }),
        );
    });
  }

  private async runTask(claim: Claim, signal: AbortSignal) {
    const started = performance.now();
    const stop = await this.execute(claim, signal);
    const ending = endingFor(stop);
    const { taskId } = claim;
    // The handler is done: its slot takes the next task while the ending is written.
    this.running.delete(taskId);
    this.settling.add(taskId);
    this.notify();
    if (!ending) {
      // Cancelled by the API (which wrote `cancelled`) or no longer ours: nothing to write.
      if (stop.how === "stopped" && stop.reason === "cancelled") this.port.send({ type: "cancelled", taskId });
      else this.port.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
      return;
    }
    let settled: Settled | null;
    try {
      settled = await this.deps.settle(taskId, claim.leaseToken, ending);
    } catch (error) {
      // Not written (or unknown): the lease lapses and the reconciler decides.
      this.log("error", "task bookkeeping failed; releasing the task", { task_id: taskId, err: String(error) });
      if (isTransientDbError(error)) this.deps.connectionLost();
      this.port.send({ type: "released", taskId, status: "unchanged", reason: "bookkeeping_failed" });
      return;
    }
    if (!settled) return this.port.send({ type: "released", taskId, status: "unchanged", reason: "lease_lost" });
    const durationMs = Math.round(performance.now() - started);
    switch (settled.status) {
      case "completed":
        this.deps.recordRuntime(durationMs);
        return this.port.send({ type: "completed", taskId, durationMs });
      case "timeout":
        return this.port.send({ type: "timed_out", taskId });
      case "failed":
        // Its own failure, or a retry with no attempts left.
        if (ending.kind === "failed") return this.port.send({ type: "failed", taskId, error: ending.error });
        return this.port.send({ type: "released", taskId, status: "failed", reason: releaseReason(stop) });
      case "pending":
        await this.deps.redispatch(settled).catch((error) => this.log("warn", "redispatch failed; the reconciler will do it", { task_id: taskId, err: String(error) }));
        return this.port.send({ type: "released", taskId, status: "pending", reason: releaseReason(stop) });
      default:
        throw new Error(`settle wrote an unexpected status ${settled.status}`);
    }
  }

  /** Runs the handler and says how the task stopped. */
  private async execute(claim: Claim, signal: AbortSignal): Promise<Stop> {
    const { taskId, leaseToken } = claim;
    let lastPercent = 0;
    let lastWrite = performance.now();
    try {
      const result = await this.handler({
        taskId,
        agentId: claim.agentId,
        agent: claim.agent,
        attempt: claim.attempt,
        database: this.deps.database(),
        settings: this.settings,
        signal,
        measureSmallScope: () => this.deps.measureSmallScope(claim.agent, signal),
        progress: async (percent) => {
          if (percent <= lastPercent) return;
          lastPercent = percent;
          this.port.send({ type: "progress", taskId, percent });
          // Throttled: a short task writes no progress rows at all (completion writes 100).
          const now = performance.now();
          if (now - lastWrite < PROGRESS_WRITE_INTERVAL_MS) return;
          lastWrite = now;
          await this.deps.progress(taskId, leaseToken, percent);
        },
      });
      if (signal.aborted) return { how: "stopped", reason: signal.reason as StopReason };
      return { how: "returned", result };
    } catch (error) {
      if (signal.aborted) return { how: "stopped", reason: signal.reason as StopReason };
      const transient = isTransientDbError(error);
      if (transient) this.deps.connectionLost();
      return { how: "threw", error, transient };
    }
  }

  /**
   * The claim cooldown (settings.claimCooldownMs, off by default): while tasks run, the next
   * claim waits until the cooldown has passed since the last one, so ids that arrive one by one
   * meanwhile are claimed, measured and settled together. It is River's fetch cooldown: fewer,
   * larger batches (less CPU per task under a stream of enqueues) for up to that much pickup
   * latency while busy. An idle actor never waits. A drain ends the wait. True if it waited.
   */
  private async coolDown(): Promise<boolean> {
    const until = this.lastClaimAt + this.settings.claimCooldownMs;
    if (this.settings.claimCooldownMs <= 0 || until <= performance.now()) return false;
    // Woken by every freed slot too; only the time or a drain ends the wait.
    for (let left = until - performance.now(); left > 0 && !this.draining; left = until - performance.now()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.slotFreed(), new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
    return true;
  }

  private slotFreed(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }

  private notify() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private log(level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) {
    this.port.send({ type: "log", level, msg, fields: { worker_id: this.workerId, ...fields } });
  }
}

/** Why a task went back (or ran out of attempts) without an ending of its own. */
function releaseReason(stop: Stop): "shutdown" | "connection_lost" {
  return stop.how === "stopped" && stop.reason === "shutdown" ? "shutdown" : "connection_lost";
}
