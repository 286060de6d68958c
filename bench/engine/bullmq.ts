/**
 * The BullMQ peer: W `Worker` instances of concurrency C in this process, no-op processors
 * (the sleeping processor for cancels), keys under the benchmark's own Redis prefix.
 */
import Redis from "ioredis";
import type { RedisClient } from "../../src/queue/redisClient.ts";
import { Queue, Worker as BullWorker, UnrecoverableError, type Job } from "bullmq";
import { bounded } from "../support.ts";
import { CpuMeter, type CpuUse } from "./cpu.ts";
import { diffRedis, redisCalls } from "./stats.ts";
import { now, Signal, type Latency } from "./util.ts";

export function bullConnection(redisUrl: string) {
  const u = new URL(redisUrl);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number(u.pathname.replace(/^\//, "") || 0),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    maxRetriesPerRequest: null,
  };
}

export type Conn = ReturnType<typeof bullConnection>;

export interface BullSettings {
  connection: Conn;
  /** Redis, for INFO commandstats. */
  redis: RedisClient;
  prefix: string;
  workers: number;
  concurrency: number;
}

class BullEvents {
  readonly active = new Map<string, number>();
  readonly finished = new Map<string, { at: number; outcome: "completed" | "failed"; job: Job }>();
  completed = 0;
  failed = 0;
  lastAt = 0;
  running = 0;
  peakRunning = 0;
  readonly changed = new Signal();

  attach(worker: BullWorker) {
    worker.on("active", (job: Job) => {
      this.peakRunning = Math.max(this.peakRunning, ++this.running);
      this.active.set(job.id!, now());
      this.changed.notify();
    });
    worker.on("completed", (job: Job) => {
      this.running--;
      this.lastAt = now();
      this.finished.set(job.id!, { at: this.lastAt, outcome: "completed", job });
      this.completed++;
      this.changed.notify();
    });
    worker.on("failed", (job: Job | undefined) => {
      this.running--;
      this.lastAt = now();
      if (job) this.finished.set(job.id!, { at: this.lastAt, outcome: "failed", job });
      this.failed++;
      this.changed.notify();
    });
    worker.on("error", (error: Error) => console.error(`bullmq worker error: ${error.message}`));
  }

  reset() {
    this.active.clear();
    this.finished.clear();
    this.completed = 0;
    this.failed = 0;
    this.lastAt = 0;
    this.running = 0;
    this.peakRunning = 0;
  }
}

function startWorkers(
  s: BullSettings,
  name: string,
  processor: (job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>,
  events: BullEvents,
): BullWorker[] {
  const workers = Array.from(
    { length: s.workers },
    () => new BullWorker(name, processor, { connection: s.connection, prefix: s.prefix, concurrency: s.concurrency }),
  );
  for (const w of workers) events.attach(w);
  return workers;
}

export interface BurnResult {
  tasks: number;
  /** Start of the workers -> last `completed` event. */
  wallMs: number;
  perSecond: number;
  peakInFlight: number;
  cpu: CpuUse;
  redisCallsPerTask: number;
  redisTop: [string, number][];
}

/** N no-op jobs added first (addBulk), then W workers of concurrency C started; timed to the last completion. */
export async function bullBurnDown(s: BullSettings, tasks: number, queueName: string): Promise<BurnResult> {
  const queue = new Queue(queueName, { connection: s.connection, prefix: s.prefix });
  const events = new BullEvents();
  let workers: BullWorker[] = [];
  try {
    await queue.waitUntilReady();
    for (let i = 0; i < tasks; i += 1000)
      await queue.addBulk(Array.from({ length: Math.min(1000, tasks - i) }, (_, j) => ({ name: "noop", data: { i: i + j } })));
    const waiting = await queue.getWaitingCount();
    if (waiting !== tasks) throw new Error(`BullMQ burn-down: ${waiting} jobs waiting, expected ${tasks}`);
    const redis0 = await redisCalls(s.redis);
    const meter = new CpuMeter();
    const t0 = now();
    workers = startWorkers(s, queueName, async () => {}, events);
    await events.changed.until(() => events.completed + events.failed >= tasks, 300_000, `${tasks} BullMQ jobs`);
    const wallMs = events.lastAt - t0;
    const cpu = meter.stop();
    const redis = diffRedis(redis0, await redisCalls(s.redis));
    if (events.failed > 0) throw new Error(`${events.failed} BullMQ jobs failed`);
    return { tasks, wallMs, perSecond: tasks / (wallMs / 1000), peakInFlight: events.peakRunning, cpu, redisCallsPerTask: redis.total / tasks, redisTop: redis.top };
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

export interface E2eResult {
  tasks: number;
  peakInFlight: number;
  wallMs: number;
  enqueuedMs: number;
  perSecond: number;
  cpu: CpuUse;
}

/** W no-op workers of concurrency C on one queue, kept across the end-to-end rounds and the pickup run. */
export class BullNoop {
  private constructor(
    private readonly queue: Queue,
    private readonly workers: BullWorker[],
    private readonly events: BullEvents,
  ) {}

  static async start(s: BullSettings, warmup: number): Promise<BullNoop> {
    const queue = new Queue("noop", { connection: s.connection, prefix: s.prefix });
    const events = new BullEvents();
    const workers = startWorkers(s, "noop", async () => {}, events);
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    const b = new BullNoop(queue, workers, events);
    await bounded(warmup, 8, async (i) => {
      await queue.add("noop", { i });
    });
    await events.changed.until(() => events.completed + events.failed >= warmup, 60_000, "BullMQ warm-up");
    return b;
  }

  /** `clients` callers of Queue.add in flight, N jobs; timed from the first add to the last completion. */
  async throughput(tasks: number, clients: number): Promise<E2eResult> {
    const { queue, events } = this;
    events.reset();
    const meter = new CpuMeter();
    const t0 = now();
    await bounded(tasks, clients, async (i) => {
      await queue.add("noop", { i });
    });
    const enqueuedMs = now() - t0;
    await events.changed.until(() => events.completed + events.failed >= tasks, 240_000, `${tasks} BullMQ jobs`);
    const wallMs = events.lastAt - t0;
    const cpu = meter.stop();
    if (events.failed > 0) throw new Error(`${events.failed} BullMQ jobs failed`);
    return { tasks, peakInFlight: events.peakRunning, wallMs, enqueuedMs, perSecond: tasks / (wallMs / 1000), cpu };
  }

  async pickup(count: number): Promise<{ job: Latency; client: Latency }> {
    const { queue, events } = this;
    events.reset();
    const job: number[] = [];
    const client: number[] = [];
    for (let i = 0; i < count; i++) {
      const t0 = now();
      const added = await queue.add("noop", { i });
      const id = added.id!;
      await events.changed.until(() => events.finished.has(id), 30_000, `BullMQ pickup job ${id}`);
      const fin = events.finished.get(id)!;
      const active = events.active.get(id);
      if (fin.outcome !== "completed" || active === undefined) throw new Error(`BullMQ pickup job ${id} did not complete`);
      client.push(active - t0);
      job.push((fin.job.processedOn ?? Number.NaN) - fin.job.timestamp);
    }
    return {
      job: { what: "BullMQ pickup, job: `processedOn - timestamp` (1 ms resolution)", samples: job },
      client: { what: "BullMQ pickup, client: `Queue.add` called -> worker `active` event", samples: client },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await this.queue.obliterate({ force: true }).catch(() => {});
    await this.queue.close();
  }
}

/**
 * BullMQ's cancel (Worker.cancelJob) reaches only jobs run by that Worker object,
 * in its process. The closest peer to DELETE-from-anywhere: a Redis pub/sub
 * channel every worker process listens to, relaying to worker.cancelJob; the
 * processor throws UnrecoverableError on abort, and the job ends `failed`.
 */
export async function bullCancel(s: BullSettings, redisUrl: string, channel: string, count: number): Promise<Latency[]> {
  const queue = new Queue("sleep", { connection: s.connection, prefix: s.prefix });
  const events = new BullEvents();
  // The worker emits `active` before it tracks the job's AbortController, so a cancel relayed
  // on `active` can be lost; the processor running means the controller is in place.
  const processing = new Set<string>();
  const processor = async (job: Job, _token?: string, signal?: AbortSignal) => {
    processing.add(job.id!);
    events.changed.notify();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, 60_000);
      signal?.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new UnrecoverableError(`cancelled: ${String(signal.reason)}`));
        },
        { once: true },
      );
    });
  };
  const workers = startWorkers(s, "sleep", processor, events);
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const publisher = new Redis(redisUrl, { maxRetriesPerRequest: null });
  subscriber.on("message", (_channel: string, jobId: string) => {
    for (const w of workers) w.cancelJob(jobId, "cancelled");
  });
  await subscriber.subscribe(channel);
  const relayed: number[] = [];
  const visible: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const added = await queue.add("sleep", { i }, { attempts: 1 });
      const id = added.id!;
      await events.changed.until(() => processing.has(id), 30_000, `BullMQ job ${id} to run`);
      const t0 = now();
      await publisher.publish(channel, id);
      await events.changed.until(() => events.finished.has(id), 10_000, `BullMQ job ${id} to fail`);
      relayed.push(events.finished.get(id)!.at - t0);
      // What a client polling the job would see.
      for (;;) {
        const state = await queue.getJobState(id);
        if (state === "failed") break;
        if (now() - t0 > 10_000) throw new Error(`BullMQ job ${id} is ${state} 10 s after the cancel`);
        await Bun.sleep(1);
      }
      visible.push(now() - t0);
      if (events.finished.get(id)!.outcome !== "failed") throw new Error(`BullMQ job ${id} was not cancelled`);
    }
  } finally {
    subscriber.disconnect();
    publisher.disconnect();
    await Promise.all(workers.map((w) => w.close()));
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
  return [
    { what: "BullMQ cancel: PUBLISH id -> `Worker.cancelJob` -> worker `failed` event", samples: relayed },
    { what: "BullMQ cancel: PUBLISH id -> `getJobState` shows `failed`", samples: visible },
  ];
}
