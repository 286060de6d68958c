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

export interface Engine {
  supervisor: Supervisor;
  reconciler: Reconciler;
  stop(): Promise<void>;
}

export interface EngineOptions {
  workers: number;
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
  });
  const reconciler = new Reconciler({ config, database, logger, dispatcher: new Dispatcher(redis, queueKeys(config.redisPrefix)) });
  await supervisor.start();
  reconciler.start();
  return {
    supervisor,
    reconciler,
    async stop() {
      await reconciler.stop();
      await supervisor.stop();
      subscriber.disconnect();
    },
  };
}
