/** Runs a command-line entry point: prints a clear one-line error and exits non-zero on failure. */
import type { Logger } from "pino";
import { ConfigError } from "../config.ts";
import { isTransientDbError } from "../db/errors.ts";

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
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  }
}

/** Runs until SIGTERM/SIGINT, then stops the given services in order and exits 0. */
export function onShutdown(logger: Logger, stop: () => Promise<void>) {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
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
