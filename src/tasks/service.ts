/**
 * Task operations for the API: enqueue (PostgreSQL first, then Redis), view
 * with live queue position and completion estimate, and cancel.
 */
import type { RedisClient } from "../queue/redisClient.ts";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import type { TaskRecord } from "../db/tasks/records.ts";
import { getTaskWithAttempts, type TaskAttempt } from "../db/tasks/attempts.ts";
import { requestCancel } from "../db/tasks/cancel.ts";
import type { InsertOutcome } from "../db/tasks/enqueue.ts";
import { TaskInsertBatcher } from "./insertBatcher.ts";
import { PlacementBatcher } from "./placementBatcher.ts";
import { isForeignKeyViolation } from "../db/errors.ts";
import { isTerminal, newTaskId, type Priority, type TaskStatus } from "../core/tasks.ts";
import { AppError, notFound } from "../core/errors.ts";
import { checkWebhookUrl, UnsafeUrlError } from "../webhooks/urlSafety.ts";
import { Dispatcher } from "../queue/dispatch.ts";
import { publishCancel } from "../queue/cancelBus.ts";
import { queueKeys, type QueueKeys } from "../queue/keys.ts";
import { QueueEstimator, type QueueSnapshot } from "../queue/estimate.ts";
import type { Placed } from "../queue/placement.ts";
import { createMetrics, type Metrics } from "../metrics/registry.ts";
import { TaskTelemetry } from "../metrics/taskEvents.ts";
import type { TaskEventPublisher } from "../queue/taskEvents.ts";
import { retryMatching, retryTask, type RetriedTask, type RetryableStatus } from "../db/tasks/retry.ts";
import type { TaskFilter } from "../db/tasks/list.ts";
import { countAgentsUpTo, refreshAgents } from "../db/tasks/bulkRefresh.ts";

/**
 * The request-time half of the SSRF guard, for every route that takes a webhook_url (refreshes,
 * schedules): 400 webhooks_not_configured without a signing secret, 400 unsafe_webhook_url with
 * the reason. The sender checks again at delivery time.
 */
export async function assertWebhookUrlAccepted(
  config: Pick<Config, "webhookSecrets" | "webhookAllowHttp" | "webhookAllowedHosts">,
  url: string,
): Promise<void> {
  if (config.webhookSecrets.length === 0)
    throw new AppError("webhooks_not_configured", "webhooks are not enabled on this server (no AGENTQ_WEBHOOK_SECRETS configured)");
  try {
    await checkWebhookUrl(url, { allowHttp: config.webhookAllowHttp, allowedHosts: config.webhookAllowedHosts });
  } catch (error) {
    if (error instanceof UnsafeUrlError)
      throw new AppError("unsafe_webhook_url", `webhook_url rejected: ${error.reason}`, { reason: error.reason });
    throw error;
  }
}

export interface TaskView extends TaskRecord {
  queue_position: number | null;
  estimated_completion_at: string | null;
}

/** A task with the attempts that ended without ending it, oldest first (the latest is in started_at / completed_at). */
export interface TaskDetail extends TaskView {
  attempts: TaskAttempt[];
}

/** Used for estimates until some task has completed. */
const DEFAULT_RUNTIME_MS = 1000;

/** The estimate averages this many of the newest run times. */
const RUNTIME_SAMPLES = 20;

export class TaskService {
  readonly dispatcher: Dispatcher;
  readonly estimator: QueueEstimator;
  readonly keys: QueueKeys;
  private readonly telemetry: TaskTelemetry;
  /** New tasks are written by group commit (src/tasks/insertBatcher.ts). */
  readonly inserter: TaskInsertBatcher;
  /** ...and then dispatched and estimated by group commit too, one pipeline per batch (src/tasks/placementBatcher.ts). */
  readonly placer: PlacementBatcher;

  constructor(
    private readonly deps: {
      config: Config;
      database: Database;
      redis: RedisClient;
      logger: Logger;
      metrics?: Metrics;
      /** Live task events (src/queue/taskEvents.ts): a new task is pending, a cancel wrote cancelled. */
      taskEvents?: TaskEventPublisher;
    },
  ) {
    this.keys = queueKeys(deps.config.redisPrefix);
    this.dispatcher = new Dispatcher(deps.redis, this.keys);
    this.estimator = new QueueEstimator(deps.redis, this.keys);
    this.inserter = new TaskInsertBatcher(deps.database.db);
    this.placer = new PlacementBatcher(deps.redis, this.dispatcher, this.estimator, RUNTIME_SAMPLES);
    this.telemetry = new TaskTelemetry(deps.metrics ?? createMetrics({}, { processMetrics: false }), deps.logger);
  }

  /**
   * Records the task, then dispatches it. If Redis is unreachable the task is
   * still recorded (PostgreSQL is the truth) and the reconciler dispatches it later.
   */
  async enqueueRefresh(
    agentId: string,
    options: { priority: Priority; webhookUrl: string | null; force: boolean; requestId?: string },
  ): Promise<{ task: TaskView; created: boolean }> {
    const { config } = this.deps;
    // The feature flag: checked before anything is written.
    if (!config.backgroundRefreshEnabled)
      throw new AppError(
        "background_refresh_disabled",
        "background refreshes are turned off on this deployment (AGENTQ_BACKGROUND_REFRESH_ENABLED=false); background=false computes coverage now",
      );
    if (options.webhookUrl !== null) await this.checkWebhookUrl(options.webhookUrl);
    let inserted: InsertOutcome;
    try {
      inserted = await this.inserter.insert({
        taskId: newTaskId(),
        agentId,
        priority: options.priority,
        webhookUrl: options.webhookUrl,
        timeoutMs: config.taskTimeoutMs,
        maxAttempts: config.maxAttempts,
        dedupe: !options.force,
      });
    } catch (error) {
      // The agent foreign key tells us the agent does not exist: no lookup beforehand.
      if (isForeignKeyViolation(error)) throw notFound("agent", agentId);
      throw error;
    }
    const { task, created } = inserted;
    if (created) this.announceNew([task], options.requestId);
    return { task: await this.place(task, created), created };
  }

  /**
   * The Redis half of a new (or deduplicated) task: its ZADD when `dispatch`, and its position and
   * estimate, in one pipeline shared with the other requests of the same INSERT batch; the script
   * runs after the ZADD, so it sees the task's place. Redis failing loses neither: the reconciler
   * dispatches the task later, and the answer has no position.
   */
  private async place(task: TaskRecord, dispatch: boolean): Promise<TaskView> {
    if (isTerminal(task.status)) return this.viewOf(task, null);
    let placed: Placed;
    try {
      placed = await this.placer.place({
        dispatch: dispatch ? { taskId: task.task_id, priority: task.priority, score: Date.parse(task.created_at) } : null,
        position: task.status === "pending" ? { taskId: task.task_id, priority: task.priority } : null,
      });
    } catch (error) {
      placed = { dispatchError: dispatch ? error : null, snapshot: null, estimateError: error };
    }
    const { logger } = this.deps;
    if (placed.dispatchError) logger.warn({ task_id: task.task_id, err: placed.dispatchError }, "dispatch failed; the reconciler will dispatch the task");
    if (placed.estimateError) logger.warn({ task_id: task.task_id, err: placed.estimateError }, "queue position unavailable");
    return this.viewOf(task, placed.snapshot);
  }

  /** Request-time half of the SSRF guard (the sender checks again at delivery time). */
  private checkWebhookUrl(url: string) {
    return assertWebhookUrlAccepted(this.deps.config, url);
  }

  /** One task as GET /tasks/{id} shows it: with its earlier attempts (one statement reads both). */
  async view(taskId: string, agentId?: string): Promise<TaskDetail> {
    const found = await getTaskWithAttempts(this.deps.database.db, taskId);
    if (!found || (agentId !== undefined && found.agent_id !== agentId)) throw notFound("task", taskId);
    const { attempts, ...task } = found;
    return { ...(await this.decorate(task)), attempts };
  }

  /** DELETE semantics of domain.md; returns false for an unknown task. */
  async cancel(taskId: string): Promise<boolean> {
    const outcome = await requestCancel(this.deps.database.db, taskId);
    if (!outcome) return false;
    if (outcome.previous !== "pending" && outcome.previous !== "running") return true; // terminal: unchanged
    // The cancel is durable (one fenced UPDATE wrote `cancelled`), so it is counted here, by the process that made it.
    const ref = { task_id: taskId, agent_id: outcome.agent_id, priority: outcome.priority, worker_id: outcome.lease_owner ?? undefined };
    const ranMs = outcome.ran_ms === null ? undefined : Math.max(0, Math.round(Number(outcome.ran_ms)));
    this.telemetry.finished({ ...ref, outcome: "cancelled", duration_ms: ranMs }, outcome.previous);
    this.publishStatus(taskId, outcome.agent_id, "cancelled", outcome.progress_percentage, outcome.attempt);
    // Then its id leaves Redis (pending), or its actor hears it and aborts the task and its SQL (running).
    // Redis being down changes neither: a stale id is dropped at its claim, and a running task's
    // supervisor finds its lease gone at the next renewal.
    if (outcome.previous === "pending") {
      // From its queue, or from its agent's park (max_concurrent_refreshes): a stale parked id
      // would take the place of a task that can run when it is released.
      await Promise.all([this.dispatcher.remove(taskId, outcome.priority), this.dispatcher.parking.remove(outcome.agent_id, taskId)]).catch(() => false);
    } else await publishCancel(this.deps.redis, this.keys, taskId).catch((error) => this.deps.logger.warn({ task_id: taskId, err: error }, "cancel publish failed; the lease renewal will stop the task"));
    return true;
  }

  /**
   * POST /tasks/{id}/retry: a new pending task for the same agent, priority and webhook_url
   * (timeout and attempts from the configuration, so a redrive gets a raised limit), with
   * `retry_of` set, dispatched like a refresh. 409 for a task that is not failed, timeout or
   * cancelled, or that was retried already (the unique retry_of index decides, race-free).
   */
  async retry(taskId: string, options: { requestId?: string } = {}): Promise<TaskView> {
    this.assertBackgroundEnabled();
    const { config, database } = this.deps;
    const outcome = await retryTask(database.db, taskId, newTaskId(), { timeoutMs: config.taskTimeoutMs, maxAttempts: config.maxAttempts });
    if (outcome.kind === "not_found") throw notFound("task", taskId);
    if (outcome.kind === "not_retryable")
      throw new AppError("conflict", `task ${taskId} is ${outcome.status}; only failed, timeout or cancelled tasks can be retried`, {
        id: taskId,
        status: outcome.status,
      });
    if (outcome.kind === "already_retried")
      throw new AppError("conflict", `task ${taskId} was already retried${outcome.by ? ` by ${outcome.by}` : ""}`, { id: taskId, retried_by: outcome.by });
    const { task } = outcome;
    this.announceNew([task], options.requestId);
    // As for a refresh: the ZADD and the estimate's script in one pipeline.
    return this.place(task, true);
  }

  /**
   * POST /tasks/retry: retries the matching tasks not retried yet, oldest first, at most
   * AGENTQ_BULK_MAX_TASKS of them, in one statement; one Redis round trip dispatches them all.
   * `more`: tasks beyond the maximum matched (call again).
   */
  async retryMany(
    filter: TaskFilter & { statuses: readonly RetryableStatus[] },
    options: { requestId?: string } = {},
  ): Promise<{ tasks: RetriedTask[]; more: boolean }> {
    this.assertBackgroundEnabled();
    const { config, database } = this.deps;
    const ids = Array.from({ length: config.bulkMaxTasks }, newTaskId);
    const result = await retryMatching(database.db, filter, ids, { timeoutMs: config.taskTimeoutMs, maxAttempts: config.maxAttempts });
    this.announceNew(result.tasks, options.requestId);
    await this.dispatchNew(result.tasks.map((t) => ({ taskId: t.task_id, priority: t.priority, score: t.score })));
    return result;
  }

  /**
   * POST /coverage/refresh: one refresh per agent with the single path's deduplication (an agent
   * with a pending refresh gets that task), in one INSERT, dispatched in one Redis round trip.
   * Unknown agent ids are reported, not an error. More than AGENTQ_BULK_MAX_AGENTS agents
   * (asked, or existing with `all`) is refused with 400 too_many_agents, before anything is written.
   */
  async refreshMany(
    agents: { ids: readonly string[] } | "all",
    options: { priority: Priority; webhookUrl: string | null; requestId?: string },
  ): Promise<{ tasks: { task: TaskRecord; created: boolean }[]; unknownAgentIds: string[] }> {
    this.assertBackgroundEnabled();
    const { config, database } = this.deps;
    const max = config.bulkMaxAgents;
    if (agents !== "all" && agents.ids.length > max)
      throw new AppError("too_many_agents", `at most ${max} agent_ids per bulk refresh`, { max, got: agents.ids.length });
    if (options.webhookUrl !== null) await this.checkWebhookUrl(options.webhookUrl);
    if (agents === "all" && (await countAgentsUpTo(database.db, max + 1)) > max)
      throw new AppError("too_many_agents", `there are more than ${max} agents: send agent_ids in pages of at most ${max} (GET /agents pages them)`, { max });
    const ids = Array.from({ length: agents === "all" ? max : agents.ids.length }, newTaskId);
    const outcome = await refreshAgents(database.db, {
      agents,
      newTaskIds: ids,
      priority: options.priority,
      webhookUrl: options.webhookUrl,
      timeoutMs: config.taskTimeoutMs,
      maxAttempts: config.maxAttempts,
    });
    const created = outcome.tasks.filter((t) => t.created).map((t) => t.task);
    this.announceNew(created, options.requestId);
    await this.dispatchNew(created.map((task) => ({ taskId: task.task_id, priority: task.priority, score: Date.parse(task.created_at) })));
    return outcome;
  }

  /** The feature flag (AGENTQ_BACKGROUND_REFRESH_ENABLED) for the console's writes: checked before anything is written. */
  private assertBackgroundEnabled() {
    if (!this.deps.config.backgroundRefreshEnabled)
      throw new AppError("background_refresh_disabled", "background refreshes are turned off on this deployment (AGENTQ_BACKGROUND_REFRESH_ENABLED=false)");
  }

  /** Dispatches new tasks in one round trip; if Redis is unreachable the reconciler dispatches them later. */
  private dispatchNew(tasks: Parameters<Dispatcher["dispatch"]>[0]): Promise<void> {
    return this.dispatcher
      .dispatch(tasks)
      .catch((error) => this.deps.logger.warn({ tasks: tasks.length, err: error }, "dispatch failed; the reconciler will dispatch the tasks"));
  }

  /**
   * Every way of making a task (refresh, retry, bulk refresh, bulk retry) counts it and sends its
   * `pending` live event, so a dashboard's list sees it appear.
   */
  private announceNew(tasks: readonly { task_id: string; agent_id: string; priority: Priority }[], requestId?: string) {
    for (const t of tasks) {
      this.telemetry.enqueued({ task_id: t.task_id, agent_id: t.agent_id, priority: t.priority, request_id: requestId });
      this.publishStatus(t.task_id, t.agent_id, "pending", 0, 0);
    }
  }

  /** Queued for the next live-event message of this process (no round trip of its own). */
  private publishStatus(taskId: string, agentId: string, status: TaskStatus, percent: number, attempt: number) {
    this.deps.taskEvents?.publish({ type: "status", task_id: taskId, agent_id: agentId, status, percent, attempt, at: new Date().toISOString() });
  }

  /** Queue position and completion estimate: one Redis round trip (src/queue/estimate.ts). */
  private async decorate(task: TaskRecord): Promise<TaskView> {
    if (isTerminal(task.status)) return this.viewOf(task, null);
    let snapshot: QueueSnapshot;
    try {
      snapshot = await this.estimator.read(task.status === "pending" ? { taskId: task.task_id, priority: task.priority } : null, RUNTIME_SAMPLES);
    } catch (error) {
      // Redis unreachable: the task itself is known (PostgreSQL); only the estimates are not.
      this.deps.logger.warn({ task_id: task.task_id, err: error }, "queue position unavailable");
      return this.viewOf(task, null);
    }
    return this.viewOf(task, snapshot);
  }

  /** The task with its position and estimate from `snapshot`; none of either without one (terminal, or Redis unreachable). */
  private viewOf(task: TaskRecord, snapshot: QueueSnapshot | null): TaskView {
    if (!snapshot || isTerminal(task.status)) return { ...task, queue_position: null, estimated_completion_at: null };
    const { position, runtimesMs: samples } = snapshot;
    const runtimeMs = samples.length === 0 ? DEFAULT_RUNTIME_MS : samples.reduce((a, b) => a + b, 0) / samples.length;
    const workers = Math.max(1, snapshot.capacity.workers);
    const now = Date.now();
    let eta: number;
    if (task.status === "running" && task.started_at) eta = Math.max(now, Date.parse(task.started_at) + runtimeMs);
    else {
      // Tasks ahead run `workers` at a time; busy workers first finish what they run.
      const ahead = (position ?? 1) - 1 + snapshot.capacity.busy;
      eta = now + (Math.floor(ahead / workers) + 1) * runtimeMs;
    }
    return { ...task, queue_position: position, estimated_completion_at: new Date(eta).toISOString() };
  }
}
