/**
 * The only reader of the environment. Everything else receives a validated
 * `Config` object (workers included: they get it by message, never from env).
 */
import { t } from "elysia";
import { Value } from "@sinclair/typebox/value";
import type { Static } from "@sinclair/typebox";

export const ConfigSchema = t.Object({
  databaseUrl: t.String({ pattern: "^postgres(ql)?://" }),
  redisUrl: t.String({ pattern: "^rediss?://" }),
  /** Every Redis key starts with this, so several deployments (and test files) share one Redis. */
  redisPrefix: t.String({ minLength: 1, pattern: "^[A-Za-z0-9_.:-]+$" }),
  host: t.String({ minLength: 1 }),
  port: t.Integer({ minimum: 0, maximum: 65535 }),
  /** Keys accepted in addition to the ones stored (hashed) in `api_keys`. */
  apiKeys: t.Array(t.String({ minLength: 16 })),
  /** A mapping counts towards coverage when its confidence is at least this. */
  confidenceThreshold: t.Number({ minimum: 0, maximum: 1 }),
  /** Target document count of a node without a `coverage_targets` row. */
  defaultTargetDocuments: t.Integer({ minimum: 1 }),
  /** Largest accepted request body; larger ones get 413. */
  maxBodyBytes: t.Integer({ minimum: 1024 }),
  /** Most documents in one `POST /documents/bulk`. */
  bulkMaxDocuments: t.Integer({ minimum: 1 }),
  logLevel: t.Union([
    t.Literal("trace"),
    t.Literal("debug"),
    t.Literal("info"),
    t.Literal("warn"),
    t.Literal("error"),
    t.Literal("fatal"),
    t.Literal("silent"),
  ]),
  /** Worker threads of a supervisor. */
  workers: t.Integer({ minimum: 0, maximum: 256 }),
});

export type Config = Static<typeof ConfigSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

/** Which environment variable feeds which config field (for the error messages and the README). */
export const ENV_NAMES: Record<keyof Config, string> = {
  databaseUrl: "DATABASE_URL",
  redisUrl: "REDIS_URL",
  redisPrefix: "AGENTQ_REDIS_PREFIX",
  host: "HOST",
  port: "PORT",
  apiKeys: "AGENTQ_API_KEYS",
  confidenceThreshold: "AGENTQ_CONFIDENCE_THRESHOLD",
  defaultTargetDocuments: "AGENTQ_DEFAULT_TARGET_DOCUMENTS",
  maxBodyBytes: "AGENTQ_MAX_BODY_BYTES",
  bulkMaxDocuments: "AGENTQ_BULK_MAX_DOCUMENTS",
  logLevel: "LOG_LEVEL",
  workers: "WORKERS",
};

export const DEFAULTS: Config = {
  databaseUrl: "postgres://root@127.0.0.1:5432/agentq",
  redisUrl: "redis://127.0.0.1:6379/0",
  redisPrefix: "agentq",
  host: "0.0.0.0",
  port: 3000,
  apiKeys: [],
  confidenceThreshold: 0.7,
  defaultTargetDocuments: 10,
  maxBodyBytes: 1024 * 1024,
  bulkMaxDocuments: 1000,
  logLevel: "info",
  workers: 2,
};

function parseNumber(raw: string): number | string {
  const n = Number(raw.trim());
  return raw.trim() === "" || Number.isNaN(n) ? raw : n;
}

/** Reads and validates the configuration; throws a ConfigError naming every bad variable. */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const pick = (key: keyof Config): string | undefined => {
    const raw = env[ENV_NAMES[key]];
    return raw === undefined || raw === "" ? undefined : raw;
  };
  const num = (key: keyof Config) => {
    const raw = pick(key);
    return raw === undefined ? DEFAULTS[key] : parseNumber(raw);
  };
  const candidate: Record<keyof Config, unknown> = {
    databaseUrl: pick("databaseUrl") ?? DEFAULTS.databaseUrl,
    redisUrl: pick("redisUrl") ?? DEFAULTS.redisUrl,
    redisPrefix: pick("redisPrefix") ?? DEFAULTS.redisPrefix,
    host: pick("host") ?? DEFAULTS.host,
    port: num("port"),
    apiKeys: (pick("apiKeys") ?? "")
      .split(",")
      .map((k) => k.trim())
      .filter((k) => k.length > 0),
    confidenceThreshold: num("confidenceThreshold"),
    defaultTargetDocuments: num("defaultTargetDocuments"),
    maxBodyBytes: num("maxBodyBytes"),
    bulkMaxDocuments: num("bulkMaxDocuments"),
    logLevel: pick("logLevel") ?? DEFAULTS.logLevel,
    workers: num("workers"),
    ...overrides,
  };
  if (!Value.Check(ConfigSchema, candidate)) {
    const problems = [...Value.Errors(ConfigSchema, candidate)].map((e) => {
      const field = e.path.split("/")[1] as keyof Config | undefined;
      const name = field ? ENV_NAMES[field] ?? field : "config";
      return `${name}: ${e.message} (got ${JSON.stringify(e.value)})`;
    });
    throw new ConfigError(problems);
  }
  return candidate as Config;
}
