/**
 * The task engine of one process: a supervisor of worker threads, the
 * reconciler, the scheduler and the webhook sender. The one composition function: the CLI
 * (`bun run supervisor`, `bun run start`), the tests and the benchmarks all
 * build the engine here, so test wiring cannot drift from production.
 */
import type { Runtime } from "../main.ts";
import { Supervisor, type SupervisorEvent } from "./supervisor.ts";
import { Reconciler } from "./reconciler.ts";
import { Dispatcher } from "../queue/dispatch.ts";
import { queueKeys } from "../queue/keys.ts";
import { openRedis, redisTargetOf } from "../queue/connection.ts";
import { WebhookSender } from "../webhooks/sender.ts";
import { TaskEventPublisher } from "../queue/taskEvents.ts";
import { relayTaskEvents } from "./taskEventRelay.ts";
import { Scheduler } from "../schedules/scheduler.ts";

/** After the supervisor's drain, how long the scheduler, webhook sender and reconciler may still take to stop. */
const SERVICES_STOP_MS = 1_000;

export interface Engine {
  supervisor: Supervisor;
  reconciler: Reconciler;
  /** Null when no webhook secret is configured (deliveries then wait in the outbox) or webhooks are off. */
  webhooks: WebhookSender | null;
  /** Publishes this process's live task events (supervisor and reconciler), one message per batch. */
  taskEvents: TaskEventPublisher;
  /** Fires due schedule slots (src/schedules/scheduler.ts); null when turned off. */
  scheduler: Scheduler | null;
  stop(): Promise<void>;
}

export interface EngineOptions {
  workers: number;
  /** Tasks each worker thread runs at once (default: config.workerConcurrency). */
  concurrency?: number;
  /** Claim cooldown of the actors while they run tasks (default: config.claimCooldownMs). */
  claimCooldownMs?: number;
  workerUrl?: string;
  onFatal?: (error: Error) => void;
  /** Run the reconciler's periodic pass (default true; tests of a lost dispatch turn it off). */
  reconcile?: boolean;
  /** Run the scheduler of agent_schedules (default true; off with AGENTQ_BACKGROUND_REFRESH_ENABLED=false). */
  schedule?: boolean;
  /** Run a webhook sender when secrets are configured (default true). */
  webhooks?: boolean;
  /** Pause between thread spawns (default 25 ms). */
  spawnStaggerMs?: number;
  /** Hears every supervisor event from the first thread's spawn on (tests, benchmarks). */
  observe?: (event: SupervisorEvent) => void;
}

export async function startEngine(runtime: Omit<Runtime, "close">, options: EngineOptions): Promise<Engine> {
  const { config, database, redis, logger } = runtime;
  const subscriber = openRedis(redisTargetOf(config), { maxRetriesPerRequest: null });
  subscriber.on("error", (error) => logger.warn({ err: error }, "redis subscriber error"));
  const supervisor = new Supervisor({
    config,
    database,
    redis,
    subscriber,
    logger,
    workers: options.workers,
    concurrency: options.concurrency,
    claimCooldownMs: options.claimCooldownMs,
    workerUrl: options.workerUrl,
    onFatal: options.onFatal,
    spawnStaggerMs: options.spawnStaggerMs ?? 25,
    metrics: runtime.metrics,
  });
  if (options.observe) supervisor.on(options.observe);
  // Live task events for SSE clients of every API process (src/queue/taskEvents.ts).
  const taskEvents = new TaskEventPublisher(redis, queueKeys(config.redisPrefix), { logger });
  supervisor.on(relayTaskEvents(taskEvents));
  const reconciler = new Reconciler({
    config,
    database,
    logger,
    dispatcher: new Dispatcher(redis, queueKeys(config.redisPrefix)),
    metrics: runtime.metrics,
    taskEvents,
  });
  // Every supervisor runs one; PostgreSQL's row locks and compare-and-set make each slot fire once.
  const scheduler =
    options.schedule !== false && config.backgroundRefreshEnabled
      ? new Scheduler({ config, database, logger, dispatcher: new Dispatcher(redis, queueKeys(config.redisPrefix)), metrics: runtime.metrics, taskEvents })
      : null;
  // The sender lives here, in the supervisor's main thread, never in a worker actor.
  const webhooks =
    options.webhooks !== false && config.webhookSecrets.length > 0 ? new WebhookSender({ config, database, logger, metrics: runtime.metrics }) : null;
  if (config.webhookSecrets.length === 0) logger.warn("no AGENTQ_WEBHOOK_SECRETS: webhook deliveries wait in the outbox until a sender with a secret runs");
  try {
    await supervisor.start();
  } catch (error) {
    await supervisor.stop().catch(() => {});
    subscriber.disconnect();
    await taskEvents.close(0);
    throw error;
  }
  if (options.reconcile !== false) reconciler.start();
  scheduler?.start();
  await webhooks?.start();
  return {
    supervisor,
    reconciler,
    webhooks,
    scheduler,
    taskEvents,
    // Bounded whatever Redis and PostgreSQL do (README, "Stopping"): the supervisor's drain bounds its own
    // steps; the scheduler, the webhook sender and the reconciler stop meanwhile (each stops taking work at
    // once), and a pass of theirs still waiting on a dead server when the drain is over is abandoned: the
    // leases, the delivery locks and the next reconciler take over.
    async stop() {
      const services = Promise.allSettled([scheduler?.stop(), webhooks?.stop(), reconciler.stop()]);
      await supervisor.stop();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = await Promise.race([services.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), SERVICES_STOP_MS)))]);
      clearTimeout(timer);
      if (!done) logger.warn("scheduler / webhook sender / reconciler still waiting on Redis or PostgreSQL; left to leases and the next reconciler");
      subscriber.disconnect();
      await taskEvents.close();
    },
  };
}
