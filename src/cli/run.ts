/** Runs a command-line entry point: prints a clear one-line error and exits non-zero on failure. */
import type { Logger } from "pino";
import { ConfigError, type Config } from "../config.ts";
import { isTransientDbError } from "../db/errors.ts";
import { RedisUnavailableError } from "../queue/redisWait.ts";

export async function runCli(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(78); // EX_CONFIG
    }
    if (isTransientDbError(error)) {
      // Still refused after AGENTQ_STARTUP_WAIT_MS: say so in one line, not a stack trace.
      console.error(`agentq: PostgreSQL is not answering (${error instanceof Error ? error.message : String(error)}); check DATABASE_URL and the server`);
      process.exit(69); // EX_UNAVAILABLE
    }
    if (error instanceof RedisUnavailableError) {
      console.error(`agentq: Redis is not answering (${error.message}); check REDIS_URL and the server`);
      process.exit(69); // EX_UNAVAILABLE
    }
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  }
}

/** Beyond the drain deadline and the grace period, the most a shutdown may take (settles, Redis, PostgreSQL). */
export const SHUTDOWN_MARGIN_MS = 5_000;

/** The bound on a whole shutdown: AGENTQ_DRAIN_DEADLINE_MS + AGENTQ_CANCEL_GRACE_MS + SHUTDOWN_MARGIN_MS. */
export const shutdownBoundMs = (config: Pick<Config, "drainDeadlineMs" | "cancelGraceMs">): number =>
  config.drainDeadlineMs + config.cancelGraceMs + SHUTDOWN_MARGIN_MS;

/**
 * Runs until SIGTERM/SIGINT, then stops the given services in order and exits 0. With `boundMs`, the
 * process exits 0 then even if `stop` has not finished (logged): what it could not hand back is left
 * to the leases and the reconciler.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>, boundMs?: number) {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, bound_ms: boundMs }, "shutting down");
    if (boundMs !== undefined)
      setTimeout(() => {
        logger.error({ bound_ms: boundMs }, "shutdown still waiting on Redis or PostgreSQL at its bound; exiting, the leases and the reconciler take over");
        process.exit(0);
      }, boundMs).unref();
    stop()
      .then(() => process.exit(0))
      .catch((error) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => handler("SIGTERM"));
  process.on("SIGINT", () => handler("SIGINT"));
}
