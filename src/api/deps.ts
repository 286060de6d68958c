/** What the HTTP app needs, handed in by the composition root (or a test). */
import type { RedisClient } from "../queue/redisClient.ts";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import type { KeyVerifier } from "../auth/apiKeys.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { TaskEventPublisher } from "../queue/taskEvents.ts";
import type { LiveEvents } from "./events/hub.ts";
import type { RateLimits } from "../queue/rateLimits.ts";

export interface AppDeps {
  config: Config;
  database: Database;
  redis: RedisClient;
  keys: KeyVerifier;
  logger: Logger;
  /** This process's metrics, served on GET /metrics; createApp makes a private one if absent. */
  metrics?: Metrics;
  /** True while the process drains: /readyz answers 503. */
  isDraining?: () => boolean;
  /** Publishes this process's live task events (pending, cancelled); createApp makes one on `redis` if absent. */
  taskEvents?: TaskEventPublisher;
  /** The SSE hub of this process (src/api/events/hub.ts); createApp makes one (and its subscription) if absent. */
  liveEvents?: LiveEvents;
  /** The per-key rate limits (src/queue/rateLimits.ts); createApp makes them on `redis` from the config if absent. */
  rateLimits?: RateLimits;
}
