/**
 * At start, waits for Redis to answer PING, with backoff, as src/db/migrate.ts does for
 * PostgreSQL (AGENTQ_STARTUP_WAIT_MS). A probe connection of its own: it retries nothing by
 * itself, so each try fails fast and the wait is ours, logged.
 */
import pRetry from "p-retry";
import { openRedis, type RedisTarget } from "./connection.ts";

/** Redis still refused (or dropped) the connection once the wait was over. */
export class RedisUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = "RedisUnavailableError";
  }
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

/** A refused, dropped or timed-out connection, or a Redis still loading its data: worth waiting for. */
export function isRedisConnectionError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  if (typeof e?.code === "string" && CONNECTION_CODES.has(e.code)) return true;
  const message = typeof e?.message === "string" ? e.message : "";
  // The last three: a cluster none of whose nodes answers, or one still without all its slots served.
  return /Connection is closed|connect ETIMEDOUT|^LOADING|Stream isn.t writeable|ECONNREFUSED|ECONNRESET|All sentinels are unreachable|None of startup nodes is available|Failed to refresh slots cache|^CLUSTERDOWN/.test(
    message,
  );
}

async function pingOnce(target: RedisTarget): Promise<void> {
  const probe = openRedis(target, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    connectTimeout: 2_000,
  });
  probe.on("error", () => {}); // the rejection below carries it
  try {
    await probe.connect();
    await probe.ping();
  } finally {
    probe.disconnect();
  }
}

export interface RedisWaitOptions {
  /** How long to keep trying while Redis refuses or drops connections. 0: one try. */
  waitMs?: number;
  /** Told of each failed try that will be retried, and when the next one starts. */
  onRetry?: (error: unknown, retryInMs: number) => void;
}

/** Resolves once Redis answers PING; rejects with RedisUnavailableError once `waitMs` is over, other errors at once. */
export async function waitForRedis(target: RedisTarget, options: RedisWaitOptions = {}): Promise<void> {
  try {
    await pRetry(() => pingOnce(target), {
      retries: options.waitMs ? Number.POSITIVE_INFINITY : 0,
      maxRetryTime: options.waitMs ?? 0,
      minTimeout: 250,
      maxTimeout: 5_000,
      factor: 2,
      shouldRetry: ({ error }) => isRedisConnectionError(error),
      onFailedAttempt: ({ error, retryDelay, retriesLeft }) => {
        if (retriesLeft > 0 && retryDelay > 0 && isRedisConnectionError(error)) options.onRetry?.(error, retryDelay);
      },
    });
  } catch (error) {
    throw isRedisConnectionError(error) ? new RedisUnavailableError(error) : error;
  }
}
