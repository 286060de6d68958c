/**
 * Every metric agentq exports, defined in one place. One `Metrics` (and one
 * prom-client Registry) per process main thread: the API and the supervisor
 * each serve theirs on `GET /metrics`; worker threads report by message.
 *
 * Naming follows Prometheus: `agentq_` prefix, base units (`_seconds`),
 * `_total` counters, and label sets bounded by enums (never a task or agent id).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type GaugeConfiguration } from "prom-client";
import type { Logger } from "pino";
import pkg from "../../package.json" with { type: "json" };

export const PRIORITIES = ["high", "medium", "low"] as const;
export const TASK_OUTCOMES = ["completed", "failed", "timeout", "cancelled"] as const;
export type TaskOutcome = (typeof TASK_OUTCOMES)[number];
/** The state a task was in when a cancel took effect. */
export const CANCEL_STATES = ["pending", "running"] as const;
/**
 * How a task got back into a queue: its owner's lease lapsed (reconciler), Redis lost its id
 * (reconciler re-dispatch), its thread crashed (supervisor), or its actor lost the database mid-run.
 */
export const RECOVERY_REASONS = ["lease_expired", "redispatched", "thread_crash", "connection_lost"] as const;
export type RecoveryReason = (typeof RECOVERY_REASONS)[number];
/** crash: the thread died by itself; unresponsive: terminated after ignoring a stop request. */
export const RESTART_REASONS = ["crash", "unresponsive"] as const;
export const WEBHOOK_OUTCOMES = ["delivered", "dead"] as const;
export const WEBHOOK_RESULTS = ["success", "http_error", "timeout", "network_error", "unsafe_url"] as const;
/** The API's rate-limit policies (src/api/rateLimit.ts): routes that create tasks, and every other authenticated route. */
export const RATE_LIMIT_POLICIES = ["enqueue", "read"] as const;

/**
 * prom-client's default metrics that Bun does not back with real values, removed from the
 * registry (verified under Bun 1.4.5; see test/unit/metrics.test.ts):
 *  - nodejs_gc_duration_seconds: Bun emits no `gc` performance entries, so it never moves;
 *  - nodejs_active_handles / _requests / _resources (and their _total): Bun's
 *    process._getActiveHandles() and getActiveResourcesInfo() are always empty;
 *  - nodejs_heap_space_size_*: node:v8 heap spaces are placeholders in JavaScriptCore;
 *  - nodejs_heap_size_total_bytes, nodejs_heap_size_used_bytes, nodejs_external_memory_bytes:
 *    process.memoryUsage() reports heapTotal equal to heapUsed and a constant `external` under
 *    Bun (the three share one collector, so they go together; process_resident_memory_bytes stays);
 *  - nodejs_version_info: Bun's Node-compatibility version, not what runs (agentq_build_info has bun_version);
 *  - process_heap_bytes: VmData, which counts JavaScriptCore's multi-GB address-space reservations.
 * Kept, because they are real under Bun: process_cpu_*, process_start_time_seconds,
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * and nodejs_eventloop_lag_* (perf_hooks.monitorEventLoopDelay works).
 */
export const UNSUPPORTED_DEFAULT_METRICS = [
  "nodejs_gc_duration_seconds",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
  "nodejs_heap_size_total_bytes",
  "nodejs_heap_size_used_bytes",
  "nodejs_external_memory_bytes",
  "nodejs_version_info",
  "process_heap_bytes",
] as const;

/** A scrape-time read gives up after this, so /metrics answers even when Redis or PostgreSQL hang. */
export const SCRAPE_READ_TIMEOUT_MS = 2000;

/** Task waits and runs go from milliseconds (no-op tasks) to minutes (the 300 s default limit). */
export const TASK_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** One webhook attempt: bounded by its 10 s timeout. */
export const WEBHOOK_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const HTTP_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * What a scrape reads live (queue depths from Redis, overdue tasks from PostgreSQL, worker
 * counts from the supervisor). Mutable: the supervisor plugs its sources in when it starts
 * and takes them out when it stops. A missing source leaves its gauge without samples.
 */
export interface MetricSources {
  queueDepths?: () => Promise<Record<(typeof PRIORITIES)[number], number>>;
  oldestPendingAgeSeconds?: () => Promise<number>;
  overdueTasks?: () => Promise<number>;
  /** Pending tasks of agents at their max_concurrent_refreshes (src/metrics/sources.ts). */
  heldByAgentLimits?: () => Promise<number>;
  workers?: () => { busy: number; total: number };
  /** Adds the busy time of running tasks since the last call to agentq_worker_busy_seconds_total. */
  accrueBusySeconds?: () => void;
}

export interface MetricsOptions {
  /** Collection failures are logged here (and the gauge is left out of that scrape). */
  logger?: Pick<Logger, "warn">;
  /** prom-client's process metrics (the ones Bun supports); default true. */
  processMetrics?: boolean;
}

/**
 * A gauge read at scrape time. When its read fails (Redis down) or times out, the failure is
 * logged and the gauge has no samples in that scrape: Prometheus marks the series stale
 * instead of recording a made-up 0, and the rest of /metrics is still served.
 */
class ScrapeGauge<T extends string> extends Gauge<T> {
  private readonly metricName: string;

  constructor(
    config: Omit<GaugeConfiguration<T>, "collect">,
    /** Sets the gauge's values; returns false when there is nothing to report (source not plugged in). */
    private readonly read: (gauge: ScrapeGauge<T>) => Promise<boolean> | boolean,
    private readonly onError: (name: string, error: unknown) => void,
  ) {
    super(config);
    this.metricName = config.name;
  }

  override async get() {
    this.reset();
    let ok = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      ok = await Promise.race([
        Promise.resolve().then(() => this.read(this)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${SCRAPE_READ_TIMEOUT_MS} ms`)), SCRAPE_READ_TIMEOUT_MS);
        }),
      ]);
    } catch (error) {
      this.onError(this.metricName, error);
    } finally {
      clearTimeout(timer);
    }
    const metric = await super.get();
    return ok ? metric : { ...metric, values: [] };
  }
}

export function createMetrics(sources: MetricSources = {}, options: MetricsOptions = {}) {
  const registry = new Registry();
  const registers = [registry];
  const onError = (name: string, error: unknown) =>
    options.logger?.warn({ metric: name, err: error instanceof Error ? error.message : String(error) }, "metric collection failed; gauge skipped");

  const metrics = {
    registry,
    sources,

    tasksEnqueued: new Counter({
      name: "agentq_tasks_enqueued_total",
      help: "Tasks written and dispatched to a queue, by priority.",
      labelNames: ["priority"] as const,
      registers,
    }),
    tasksFinished: new Counter({
      name: "agentq_tasks_finished_total",
      help: "Tasks that reached a terminal status, by outcome.",
      labelNames: ["outcome"] as const,
      registers,
    }),
    taskWaitSeconds: new Histogram({
      name: "agentq_task_wait_seconds",
      help: "Time from enqueue to the start of the run, by priority.",
      labelNames: ["priority"] as const,
      buckets: TASK_SECONDS_BUCKETS,
      registers,
    }),
    taskRunSeconds: new Histogram({
      name: "agentq_task_run_seconds",
      help: "Time from the start of a run to its terminal status, by outcome.",
      labelNames: ["outcome"] as const,
      buckets: TASK_SECONDS_BUCKETS,
      registers,
    }),
    cancellations: new Counter({
      name: "agentq_task_cancellations_total",
      help: "Cancels that took effect, by the state the task was in (pending or running).",
      labelNames: ["state"] as const,
      registers,
    }),
    leaseExpiries: new Counter({
      name: "agentq_lease_expiries_total",
      help: "Running tasks whose owner stopped renewing the lease (owner died).",
      registers,
    }),
    tasksRecovered: new Counter({
      name: "agentq_tasks_recovered_total",
      help: "Tasks put back in a queue by recovery, by how (lease_expired, redispatched, thread_crash, connection_lost).",
      labelNames: ["reason"] as const,
      registers,
    }),
    tasksDeferred: new Counter({
      name: "agentq_tasks_deferred_total",
      help: "Popped tasks left pending (parked) because their agent had max_concurrent_refreshes tasks running.",
      registers,
    }),
    workerRestarts: new Counter({
      name: "agentq_worker_restarts_total",
      help: "Worker threads replaced, by reason (crash, unresponsive).",
      labelNames: ["reason"] as const,
      registers,
    }),
    workerBusySeconds: new Counter({
      name: "agentq_worker_busy_seconds_total",
      help: "Task-seconds spent running tasks (each running task adds its time); rate() over agentq_workers is utilisation.",
      registers,
      collect() {
        sources.accrueBusySeconds?.();
      },
    }),

    queueDepth: new ScrapeGauge(
      {
        name: "agentq_queue_depth",
        help: "Task ids waiting in the Redis queue of each priority (ZCARD at scrape time; cluster-wide: aggregate with max, not sum).",
        labelNames: ["priority"] as const,
        registers,
      },
      async (g) => {
        if (!sources.queueDepths) return false;
        const depths = await sources.queueDepths();
        for (const p of PRIORITIES) g.set({ priority: p }, depths[p]);
        return true;
      },
      onError,
    ),
    oldestPendingAge: new ScrapeGauge(
      {
        name: "agentq_oldest_pending_task_age_seconds",
        help: "Age of the oldest task id in any queue (lowest score), 0 when the queues are empty (cluster-wide: aggregate with max).",
        registers,
      },
      async (g) => {
        if (!sources.oldestPendingAgeSeconds) return false;
        g.set(await sources.oldestPendingAgeSeconds());
        return true;
      },
      onError,
    ),
    tasksOverdue: new ScrapeGauge(
      {
        name: "agentq_tasks_overdue",
        help: "Running tasks past started_at + timeout + cancel grace, read from PostgreSQL at scrape time (cluster-wide: aggregate with max).",
        registers,
      },
      async (g) => {
        if (!sources.overdueTasks) return false;
        g.set(await sources.overdueTasks());
        return true;
      },
      onError,
    ),
    tasksHeldByAgentLimit: new ScrapeGauge(
      {
        name: "agentq_tasks_held_by_agent_limit",
        help: "Pending tasks of agents that run max_concurrent_refreshes tasks already, read from PostgreSQL at scrape time (cluster-wide: aggregate with max).",
        registers,
      },
      async (g) => {
        if (!sources.heldByAgentLimits) return false;
        g.set(await sources.heldByAgentLimits());
        return true;
      },
      onError,
    ),
    workers: new ScrapeGauge(
      { name: "agentq_workers", help: "Task slots of this supervisor: live worker threads x tasks per thread (--concurrency).", registers },
      (g) => {
        if (!sources.workers) return false;
        g.set(sources.workers().total);
        return true;
      },
      onError,
    ),
    workersBusy: new ScrapeGauge(
      { name: "agentq_workers_busy", help: "Tasks this supervisor is running (busy task slots).", registers },
      (g) => {
        if (!sources.workers) return false;
        g.set(sources.workers().busy);
        return true;
      },
      onError,
    ),
    workerUtilisation: new ScrapeGauge(
      { name: "agentq_worker_utilisation_ratio", help: "Busy task slots / task slots of this supervisor (0 when it has none).", registers },
      (g) => {
        if (!sources.workers) return false;
        const { busy, total } = sources.workers();
        g.set(total > 0 ? busy / total : 0);
        return true;
      },
      onError,
    ),
    buildInfo: new Gauge({
      name: "agentq_build_info",
      help: "Always 1; the labels say which agentq version runs on which Bun.",
      labelNames: ["version", "bun_version"] as const,
      registers,
    }),

    webhookDeliveries: new Counter({
      name: "agentq_webhook_deliveries_total",
      help: "Webhook deliveries that ended, by outcome (delivered, dead).",
      labelNames: ["outcome"] as const,
      registers,
    }),
    webhookAttempts: new Counter({
      name: "agentq_webhook_attempts_total",
      help: "Webhook delivery attempts, by result (success, http_error, timeout, network_error, unsafe_url).",
      labelNames: ["result"] as const,
      registers,
    }),
    webhookAttemptSeconds: new Histogram({
      name: "agentq_webhook_attempt_duration_seconds",
      help: "Duration of one webhook delivery attempt.",
      labelNames: ["result"] as const,
      buckets: WEBHOOK_SECONDS_BUCKETS,
      registers,
    }),

    httpRequests: new Counter({
      name: "agentq_http_requests_total",
      help: "HTTP requests answered, by method, route template and status.",
      labelNames: ["method", "route", "status"] as const,
      registers,
    }),
    httpRequestSeconds: new Histogram({
      name: "agentq_http_request_duration_seconds",
      help: "HTTP request latency, by method, route template and status.",
      labelNames: ["method", "route", "status"] as const,
      buckets: HTTP_SECONDS_BUCKETS,
      registers,
    }),

    sseStreams: new Gauge({
      name: "agentq_sse_streams",
      help: "Live event streams (SSE) open on this API process.",
      registers,
    }),
    sseClientsDropped: new Counter({
      name: "agentq_sse_clients_dropped_total",
      help: "SSE clients disconnected for letting more than AGENTQ_SSE_CLIENT_BUFFER_BYTES of events wait unread.",
      registers,
    }),
    rateLimitErrors: new Counter({
      name: "agentq_rate_limit_errors_total",
      help: "Requests let through unchecked because the rate limiter could not reach Redis (error, or no answer in time), by policy.",
      labelNames: ["policy"] as const,
      registers,
    }),
  };

  metrics.buildInfo.set({ version: pkg.version, bun_version: Bun.version }, 1);
  // Every bounded label value starts at 0, so rates and ratios have a series before the first event.
  for (const priority of PRIORITIES) {
    metrics.tasksEnqueued.inc({ priority }, 0);
    metrics.taskWaitSeconds.zero({ priority });
  }
  for (const outcome of TASK_OUTCOMES) {
    metrics.tasksFinished.inc({ outcome }, 0);
    metrics.taskRunSeconds.zero({ outcome });
  }
  for (const state of CANCEL_STATES) metrics.cancellations.inc({ state }, 0);
  for (const reason of RECOVERY_REASONS) metrics.tasksRecovered.inc({ reason }, 0);
  for (const reason of RESTART_REASONS) metrics.workerRestarts.inc({ reason }, 0);
  for (const outcome of WEBHOOK_OUTCOMES) metrics.webhookDeliveries.inc({ outcome }, 0);
  for (const policy of RATE_LIMIT_POLICIES) metrics.rateLimitErrors.inc({ policy }, 0);
  for (const result of WEBHOOK_RESULTS) {
    metrics.webhookAttempts.inc({ result }, 0);
    metrics.webhookAttemptSeconds.zero({ result });
  }

  if (options.processMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    for (const name of UNSUPPORTED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }
  return metrics;
}

/** The text a scrape gets, with its content type. Never throws for a failed source (see ScrapeGauge). */
export async function exposition(metrics: Metrics): Promise<{ contentType: string; body: string }> {
  return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
}

export type Metrics = ReturnType<typeof createMetrics>;
