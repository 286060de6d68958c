/**
 * The pool of worker threads: spawns each with a ready handshake, routes its
 * messages, and replaces a thread that closed, within an OTP-style restart
 * intensity (src/supervisor/restartPolicy.ts); past it, it gives up loudly.
 * What the tasks of a closed thread become is the supervisor's call
 * (`settleDead`); the pool only waits for it before replacing the thread.
 */
import type { Logger } from "pino";
import { isWorkerMessage, type SupervisorMessage, type WorkerMessage, type WorkerSettings } from "../protocol/messages.ts";
import { RestartBudget } from "./restartPolicy.ts";
import type { Priority } from "../core/tasks.ts";
import type { StopReason } from "../core/settle.ts";

/** A task an actor runs, as the supervisor tracks it. */
export interface RunningTask {
  taskId: string;
  agentId: string;
  attempt: number;
  priority: Priority;
  leaseToken: string;
  startedAt: number;
  /** Busy time up to here is already in agentq_worker_busy_seconds_total. */
  busyAccruedAt: number;
  /** Set once the supervisor has asked the task to stop. */
  stopping?: StopReason;
}

export interface Slot {
  index: number;
  id: string;
  worker: Worker;
  ready: boolean;
  /** The tasks its actor runs now, by task id. */
  tasks: Map<string, RunningTask>;
  /** True once we terminate it on purpose (its close is not a crash). */
  retiring: boolean;
  drained: boolean;
  /** Resolves once the thread closed and its tasks were settled. */
  closed: Promise<number>;
}

/** Every Worker thread this process has started and not yet seen close (the tests' leak check). */
const liveThreads = new Set<Worker>();
export const liveWorkerThreads = (): number => liveThreads.size;

export interface PoolOptions {
  supervisorId: string;
  size: number;
  workerUrl: string;
  settings: WorkerSettings;
  logger: Logger;
  restartMax: number;
  restartWindowMs: number;
  readyTimeoutMs?: number;
}

export interface PoolHooks {
  onMessage(slot: Slot, message: WorkerMessage): void;
  /** Settles what the closed thread held; `crashed` when nobody asked it to close. */
  settleDead(slot: Slot, code: number, crashed: boolean): Promise<void>;
  /** False while draining or stopped: a closed thread is not replaced then. */
  replacing(): boolean;
  onCrash(slot: Slot, code: number): void;
  onReplaced(slot: Slot, crashed: boolean): void;
  onFatal(error: Error): void;
}

export class WorkerPool {
  private readonly slots: (Slot | null)[];
  private readonly budget: RestartBudget;
  private spawnSeq = 0;

  constructor(
    private readonly options: PoolOptions,
    private readonly hooks: PoolHooks,
  ) {
    this.slots = Array.from({ length: options.size }, () => null);
    this.budget = new RestartBudget({ maxRestarts: options.restartMax, windowMs: options.restartWindowMs });
  }

  get size(): number {
    return this.slots.length;
  }

  live(): Slot[] {
    return this.slots.filter((s): s is Slot => s !== null);
  }

  post(slot: Slot, message: SupervisorMessage) {
    slot.worker.postMessage(message);
  }

  /** Terminates a thread on purpose; its close settles its tasks and (unless draining) replaces it. */
  retire(slot: Slot) {
    slot.retiring = true;
    slot.worker.terminate();
  }

  spawn(index: number): Promise<void> {
    const { supervisorId, logger } = this.options;
    const readyTimeoutMs = this.options.readyTimeoutMs ?? 10_000;
    const id = `${supervisorId}-w${index}-${this.spawnSeq++}`;
    const worker = new Worker(this.options.workerUrl);
    liveThreads.add(worker);
    let resolveClosed!: (code: number) => void;
    const slot: Slot = {
      index,
      id,
      worker,
      ready: false,
      tasks: new Map(),
      retiring: false,
      drained: false,
      closed: new Promise<number>((r) => (resolveClosed = r)),
    };
    this.slots[index] = slot;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${id} sent no ready within ${readyTimeoutMs} ms`)), readyTimeoutMs);
      worker.addEventListener("message", (event: MessageEvent) => {
        const message: unknown = event.data;
        if (!isWorkerMessage(message)) {
          logger.warn({ worker_id: id }, "ignoring malformed worker message");
          return;
        }
        if (message.type === "ready") {
          clearTimeout(timer);
          slot.ready = true;
          resolve();
        }
        this.hooks.onMessage(slot, message);
      });
      worker.addEventListener("close", (event: Event) => {
        clearTimeout(timer);
        liveThreads.delete(worker);
        const code = (event as CloseEvent).code ?? 0;
        if (!slot.ready) reject(new Error(`worker ${id} exited before it was ready (code ${code})`));
        void this.onClose(slot, code).finally(() => resolveClosed(code));
      });
      worker.addEventListener("error", (event: Event) => {
        logger.error({ worker_id: id, err: (event as ErrorEvent).message }, "worker thread error");
      });
    });
    this.post(slot, { type: "init", workerId: id, settings: this.options.settings });
    return ready;
  }

  private async onClose(slot: Slot, code: number) {
    const { logger } = this.options;
    if (this.slots[slot.index] === slot) this.slots[slot.index] = null;
    const crashed = !slot.retiring;
    try {
      await this.hooks.settleDead(slot, code, crashed);
    } catch (error) {
      // PostgreSQL unreachable: the leases lapse and the reconciler retries the tasks.
      logger.error({ worker_id: slot.id, err: error }, "could not settle the tasks of a dead thread");
    }
    if (!this.hooks.replacing()) return;
    if (crashed) {
      logger.error({ worker_id: slot.id, code }, "worker thread died");
      this.hooks.onCrash(slot, code);
      if (!this.budget.allow(Date.now())) {
        const error = new Error(
          `restart intensity exceeded: more than ${this.options.restartMax} worker crashes in ${this.options.restartWindowMs} ms`,
        );
        logger.fatal({ supervisor: this.options.supervisorId }, error.message);
        this.hooks.onFatal(error);
        return;
      }
    }
    try {
      await this.spawn(slot.index);
      this.hooks.onReplaced(slot, crashed);
    } catch (error) {
      logger.error({ err: error }, "could not replace a worker thread");
    }
  }
}
