/** What the HTTP app needs, handed in by the composition root (or a test). */
import type Redis from "ioredis";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import type { KeyVerifier } from "../auth/apiKeys.ts";
import type { Metrics } from "../metrics/registry.ts";

export interface AppDeps {
  config: Config;
  database: Database;
  redis: Redis;
  keys: KeyVerifier;
  logger: Logger;
  /** This process's metrics, served on GET /metrics; createApp makes a private one if absent. */
  metrics?: Metrics;
  /** True while the process drains: /readyz answers 503. */
  isDraining?: () => boolean;
}
