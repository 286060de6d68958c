/**
 * The task engine of one process: a supervisor of worker threads plus the
 * reconciler. Started by `bun run supervisor` and `bun run start`.
 */
import Redis from "ioredis";
import type { Runtime } from "../main.ts";
import { Supervisor } from "./supervisor.ts";
import { Reconciler } from "./reconciler.ts";
import { Dispatcher } from "../queue/dispatch.ts";
import { queueKeys } from "../queue/keys.ts";
import { WebhookSender } from "../webhooks/sender.ts";

export interface Engine {
  supervisor: Supervisor;
  reconciler: Reconciler;
  /** Null when no webhook secret is configured (deliveries then wait in the outbox). */
  webhooks: WebhookSender | null;
  stop(): Promise<void>;
}

export interface EngineOptions {
  workers: number;
  /** Tasks each worker thread runs at once (default: config.workerConcurrency). */
  concurrency?: number;
  workerUrl?: string;
  onFatal?: (error: Error) => void;
}

export async function startEngine(runtime: Runtime, options: EngineOptions): Promise<Engine> {
  const { config, database, redis, logger } = runtime;
  const subscriber = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  subscriber.on("error", (error) => logger.warn({ err: error }, "redis subscriber error"));
  const supervisor = new Supervisor({
    config,
    database,
    redis,
    subscriber,
    logger,
    workers: options.workers,
    workerUrl: options.workerUrl,
    onFatal: options.onFatal,
    spawnStaggerMs: 25,
    metrics: runtime.metrics,
  });
  const reconciler = new Reconciler({
    config,
    database,
    logger,
    dispatcher: new Dispatcher(redis, queueKeys(config.redisPrefix)),
    metrics: runtime.metrics,
  });
  // The sender lives here, in the supervisor's main thread, never in a worker actor.
  const webhooks = config.webhookSecrets.length > 0 ? new WebhookSender({ config, database, logger, metrics: runtime.metrics }) : null;
  if (!webhooks) logger.warn("no AGENTQ_WEBHOOK_SECRETS: webhook deliveries wait in the outbox until a sender with a secret runs");
  await supervisor.start();
  reconciler.start();
  await webhooks?.start();
  return {
    supervisor,
    reconciler,
    webhooks,
    async stop() {
      await webhooks?.stop();
      await reconciler.stop();
      await supervisor.stop();
      subscriber.disconnect();
    },
  };
}
