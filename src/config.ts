/**
 * The only reader of the environment. Everything else receives a validated
 * `Config` object (workers included: they get it by message, never from env).
 */
import { t } from "elysia";
import { Value } from "@sinclair/typebox/value";
import type { Static } from "@sinclair/typebox";
import { doublingSchedule, MAX_STEP_MS, MAX_STEPS, parseSchedule, STANDARD_WEBHOOKS_SCHEDULE_MS } from "./webhooks/schedule.ts";

export const ConfigSchema = t.Object({
  databaseUrl: t.String({ pattern: "^postgres(ql)?://" }),
  redisUrl: t.String({ pattern: "^rediss?://" }),
  /**
   * Redis Sentinel: the sentinels asked where the primary is (empty: REDIS_URL is the server).
   * REDIS_URL's credentials, database and scheme still apply to the primary; its host and port are unused.
   */
  redisSentinels: t.Array(t.Object({ host: t.String({ minLength: 1 }), port: t.Integer({ minimum: 1, maximum: 65535 }) })),
  /** The primary's name in the sentinels' `sentinel monitor <name> ...`; required with sentinels. */
  redisSentinelName: t.String({ pattern: "^([A-Za-z0-9._-]+)?$" }),
  /** The sentinels' own password (their `requirepass`), if any; the primary's is REDIS_URL's. */
  redisSentinelPassword: t.String(),
  /**
   * Redis Cluster: some of its nodes, to discover the rest from (empty: not a cluster). REDIS_URL's
   * credentials and scheme apply to every node; its host and port are unused, its database must be 0.
   */
  redisClusterNodes: t.Array(t.Object({ host: t.String({ minLength: 1 }), port: t.Integer({ minimum: 1, maximum: 65535 }) })),
  /** Every Redis key starts with this, so several deployments (and test files) share one Redis. */
  redisPrefix: t.String({ minLength: 1, pattern: "^[A-Za-z0-9_.:-]+$" }),
  host: t.String({ minLength: 1 }),
  port: t.Integer({ minimum: 0, maximum: 65535 }),
  /** Live event streams (SSE): a `: ping` comment this often on every open stream. */
  sseHeartbeatMs: t.Integer({ minimum: 50, maximum: 300_000 }),
  /** An SSE client with more than this many bytes still unread from earlier bursts is dropped (src/api/events/hub.ts). */
  sseClientBufferBytes: t.Integer({ minimum: 4096, maximum: 16 * 1024 * 1024 }),
  /** Open SSE streams per API process, at most; more are refused with 503. */
  sseMaxClients: t.Integer({ minimum: 1, maximum: 1_000_000 }),
  /** Keys accepted in addition to the ones stored (hashed) in `api_keys`. */
  apiKeys: t.Array(t.String({ minLength: 16 })),
  /** A mapping counts towards coverage when its confidence is at least this. */
  confidenceThreshold: t.Number({ minimum: 0, maximum: 1 }),
  /** Target document count of a node without a `coverage_targets` row. */
  defaultTargetDocuments: t.Integer({ minimum: 1 }),
  /** Largest accepted request body; larger ones get 413. */
  maxBodyBytes: t.Integer({ minimum: 1024 }),
  /** Deepest nesting of arrays and objects in a request body; deeper ones get 400 before they are parsed. */
  maxJsonDepth: t.Integer({ minimum: 8, maximum: 512 }),
  /** Deepest nesting of an agent's retrieval_config or features_config (the object itself is level 1). */
  maxConfigDepth: t.Integer({ minimum: 1, maximum: 256 }),
  /** Largest retrieval_config or features_config, in bytes of its JSON text. */
  maxConfigBytes: t.Integer({ minimum: 2 }),
  /** Most documents in one `POST /documents/bulk`. */
  bulkMaxDocuments: t.Integer({ minimum: 1 }),
  /** Most tasks one `POST /tasks/retry` retries (more matching: the answer says so, call again). */
  bulkMaxTasks: t.Integer({ minimum: 1, maximum: 10_000 }),
  /** Most agents one `POST /coverage/refresh` refreshes (more: refused). */
  bulkMaxAgents: t.Integer({ minimum: 1, maximum: 10_000 }),
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
  /** Tasks one worker thread runs at once (coverage work waits on PostgreSQL, not on the CPU). */
  workerConcurrency: t.Integer({ minimum: 1, maximum: 256 }),
  /**
   * While a worker thread runs tasks, it claims at most once per this many ms (River's fetch
   * cooldown): a stream of single enqueues is then claimed a batch at a time, for less CPU per
   * task, at the price of up to this much pickup latency while busy. 0 (the default): claim at once.
   */
  claimCooldownMs: t.Integer({ minimum: 0, maximum: 1_000 }),
  /** Run-time limit of one attempt of a task; past it the task ends `timeout`. */
  taskTimeoutMs: t.Integer({ minimum: 10 }),
  /** Claims of one task before a dead owner makes it `failed`. */
  maxAttempts: t.Integer({ minimum: 1, maximum: 100 }),
  /** A running task's lease; renewed every third of it by its supervisor. */
  leaseMs: t.Integer({ minimum: 100 }),
  /** How long an actor may take to stop after a cancel or timeout before its thread is terminated. */
  cancelGraceMs: t.Integer({ minimum: 10 }),
  /** On SIGTERM, how long running tasks may finish before they are handed back. */
  drainDeadlineMs: t.Integer({ minimum: 0 }),
  /** How often the reconciler re-dispatches lost tasks and reaps expired leases. */
  reconcileEveryMs: t.Integer({ minimum: 50 }),
  /** How often a supervisor's scheduler looks for due schedule slots (agent_schedules). */
  scheduleEveryMs: t.Integer({ minimum: 10, maximum: 3_600_000 }),
  /** A pending task untouched this long is checked against Redis (and re-dispatched if missing). */
  stalePendingMs: t.Integer({ minimum: 0 }),
  /** Restart intensity: at most restartMax thread crashes in restartWindowMs, then the supervisor gives up. */
  restartMax: t.Integer({ minimum: 0 }),
  restartWindowMs: t.Integer({ minimum: 1 }),
  /** At start, how long to wait for PostgreSQL to accept connections (it may be starting too). */
  startupWaitMs: t.Integer({ minimum: 0 }),
  /** Terminal tasks are deleted after this long. */
  taskRetentionMs: t.Integer({ minimum: 1000 }),
  /** coverage_history rows are deleted after this long. */
  historyRetentionMs: t.Integer({ minimum: 1000 }),
  /**
   * Webhook signing secrets, `whsec_<base64 key>`; the first signs, all are sent
   * (Standard Webhooks allows several signatures) so clients can rotate.
   */
  webhookSecrets: t.Array(t.String({ pattern: "^whsec_[A-Za-z0-9+/]{16,}={0,2}$" })),
  /** Accept http:// webhook URLs (local development only). */
  webhookAllowHttp: t.Boolean(),
  /** Host names (or literal addresses) whose webhooks may reach internal addresses. */
  webhookAllowedHosts: t.Array(t.String({ minLength: 1 })),
  /**
   * Waits before each retry of a webhook delivery, in milliseconds (the first attempt is
   * immediate): AGENTQ_WEBHOOK_SCHEDULE, or the doubling schedule of AGENTQ_WEBHOOK_RETRIES
   * and AGENTQ_WEBHOOK_BACKOFF_MS (see webhookSchedule below). Empty: no retry.
   */
  webhookSchedule: t.Array(t.Integer({ minimum: 0, maximum: MAX_STEP_MS }), { maxItems: MAX_STEPS }),
  /** Each retry's wait is spread over ±this share of its step (0.2: 80% to 120%). */
  webhookJitter: t.Number({ minimum: 0, maximum: 1 }),
  /** Time limit of one delivery attempt. */
  webhookTimeoutMs: t.Integer({ minimum: 100 }),
  /** Longest Retry-After honoured; a longer one is cut to this. */
  webhookMaxRetryAfterMs: t.Integer({ minimum: 0, maximum: MAX_STEP_MS }),
  /** Deliveries one sender runs at the same time. */
  webhookConcurrency: t.Integer({ minimum: 1, maximum: 1000 }),
  /** Port of a standalone supervisor's /metrics and /healthz server (0: a random free port). */
  supervisorMetricsPort: t.Integer({ minimum: 0, maximum: 65535 }),
  /** Feature flag: when false, background refreshes answer 503 (background=false still works). */
  backgroundRefreshEnabled: t.Boolean(),
  /** How long an API process trusts a verified stored key before asking PostgreSQL again (revokes evict at once via Redis). */
  apiKeyCacheTtlMs: t.Integer({ minimum: 0, maximum: 3_600_000 }),
  /** How long a refused key is refused without asking PostgreSQL again. */
  apiKeyNegativeCacheTtlMs: t.Integer({ minimum: 0, maximum: 3_600_000 }),
  /** The web dashboard at /dashboard (off: every /dashboard path is 404 and no session cookie is accepted). */
  dashboardEnabled: t.Boolean(),
  /** The dashboard shows no action and refuses every change made with a session (403); API keys are unaffected. */
  dashboardReadOnly: t.Boolean(),
  /** Lifetime of a dashboard session from sign-in (absolute; sign-in again after it). */
  dashboardSessionTtlMs: t.Integer({ minimum: 60_000, maximum: 30 * 24 * 3_600_000 }),
  /** Requests per API key per window to the routes that create tasks (refresh, bulk refresh, retry, redrive); 0: no limit. */
  rateLimitEnqueue: t.Integer({ minimum: 0, maximum: 1_000_000 }),
  /** Requests per API key per window to every other authenticated /api/v1 route; 0: no limit. */
  rateLimitRead: t.Integer({ minimum: 0, maximum: 1_000_000 }),
  /** The fixed window both rate limits count in, in seconds. */
  rateLimitWindowS: t.Integer({ minimum: 1, maximum: 86_400 }),
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
  redisSentinels: "AGENTQ_REDIS_SENTINELS",
  redisSentinelName: "AGENTQ_REDIS_SENTINEL_NAME",
  redisSentinelPassword: "AGENTQ_REDIS_SENTINEL_PASSWORD",
  redisClusterNodes: "AGENTQ_REDIS_CLUSTER_NODES",
  redisPrefix: "AGENTQ_REDIS_PREFIX",
  host: "HOST",
  port: "PORT",
  sseHeartbeatMs: "AGENTQ_SSE_HEARTBEAT_MS",
  sseClientBufferBytes: "AGENTQ_SSE_CLIENT_BUFFER_BYTES",
  sseMaxClients: "AGENTQ_SSE_MAX_CLIENTS",
  apiKeys: "AGENTQ_API_KEYS",
  confidenceThreshold: "AGENTQ_CONFIDENCE_THRESHOLD",
  defaultTargetDocuments: "AGENTQ_DEFAULT_TARGET_DOCUMENTS",
  maxBodyBytes: "AGENTQ_MAX_BODY_BYTES",
  maxJsonDepth: "AGENTQ_MAX_JSON_DEPTH",
  maxConfigDepth: "AGENTQ_MAX_CONFIG_DEPTH",
  maxConfigBytes: "AGENTQ_MAX_CONFIG_BYTES",
  bulkMaxDocuments: "AGENTQ_BULK_MAX_DOCUMENTS",
  bulkMaxTasks: "AGENTQ_BULK_MAX_TASKS",
  bulkMaxAgents: "AGENTQ_BULK_MAX_AGENTS",
  logLevel: "LOG_LEVEL",
  workers: "WORKERS",
  workerConcurrency: "AGENTQ_WORKER_CONCURRENCY",
  claimCooldownMs: "AGENTQ_CLAIM_COOLDOWN_MS",
  taskTimeoutMs: "AGENTQ_TASK_TIMEOUT_MS",
  maxAttempts: "AGENTQ_MAX_ATTEMPTS",
  leaseMs: "AGENTQ_LEASE_MS",
  cancelGraceMs: "AGENTQ_CANCEL_GRACE_MS",
  drainDeadlineMs: "AGENTQ_DRAIN_DEADLINE_MS",
  reconcileEveryMs: "AGENTQ_RECONCILE_EVERY_MS",
  scheduleEveryMs: "AGENTQ_SCHEDULE_EVERY_MS",
  stalePendingMs: "AGENTQ_STALE_PENDING_MS",
  restartMax: "AGENTQ_RESTART_MAX",
  restartWindowMs: "AGENTQ_RESTART_WINDOW_MS",
  startupWaitMs: "AGENTQ_STARTUP_WAIT_MS",
  taskRetentionMs: "AGENTQ_TASK_RETENTION_MS",
  historyRetentionMs: "AGENTQ_HISTORY_RETENTION_MS",
  webhookSecrets: "AGENTQ_WEBHOOK_SECRETS",
  webhookAllowHttp: "AGENTQ_WEBHOOK_ALLOW_HTTP",
  webhookAllowedHosts: "AGENTQ_WEBHOOK_ALLOWED_HOSTS",
  webhookSchedule: "AGENTQ_WEBHOOK_SCHEDULE",
  webhookJitter: "AGENTQ_WEBHOOK_JITTER",
  webhookTimeoutMs: "AGENTQ_WEBHOOK_TIMEOUT_MS",
  webhookMaxRetryAfterMs: "AGENTQ_WEBHOOK_MAX_RETRY_AFTER_MS",
  webhookConcurrency: "AGENTQ_WEBHOOK_CONCURRENCY",
  supervisorMetricsPort: "AGENTQ_SUPERVISOR_METRICS_PORT",
  backgroundRefreshEnabled: "AGENTQ_BACKGROUND_REFRESH_ENABLED",
  apiKeyCacheTtlMs: "AGENTQ_API_KEY_CACHE_TTL_MS",
  apiKeyNegativeCacheTtlMs: "AGENTQ_API_KEY_NEGATIVE_CACHE_TTL_MS",
  dashboardEnabled: "AGENTQ_DASHBOARD_ENABLED",
  dashboardReadOnly: "AGENTQ_DASHBOARD_READ_ONLY",
  dashboardSessionTtlMs: "AGENTQ_DASHBOARD_SESSION_TTL_MS",
  rateLimitEnqueue: "AGENTQ_RATE_LIMIT_ENQUEUE",
  rateLimitRead: "AGENTQ_RATE_LIMIT_READ",
  rateLimitWindowS: "AGENTQ_RATE_LIMIT_WINDOW_S",
};

export const DEFAULTS: Config = {
  databaseUrl: "postgres://root@127.0.0.1:5432/agentq",
  redisUrl: "redis://127.0.0.1:6379/0",
  redisSentinels: [],
  redisSentinelName: "",
  redisSentinelPassword: "",
  redisClusterNodes: [],
  redisPrefix: "agentq",
  host: "0.0.0.0",
  port: 3000,
  sseHeartbeatMs: 15_000,
  sseClientBufferBytes: 64 * 1024,
  sseMaxClients: 10_000,
  apiKeys: [],
  confidenceThreshold: 0.7,
  defaultTargetDocuments: 10,
  maxBodyBytes: 1024 * 1024,
  maxJsonDepth: 64,
  maxConfigDepth: 32,
  maxConfigBytes: 16 * 1024,
  bulkMaxDocuments: 1000,
  bulkMaxTasks: 1000,
  bulkMaxAgents: 1000,
  logLevel: "info",
  workers: 2,
  workerConcurrency: 32,
  claimCooldownMs: 0,
  taskTimeoutMs: 300_000,
  maxAttempts: 3,
  leaseMs: 30_000,
  cancelGraceMs: 2_000,
  drainDeadlineMs: 25_000,
  reconcileEveryMs: 5_000,
  scheduleEveryMs: 1_000,
  stalePendingMs: 10_000,
  restartMax: 5,
  restartWindowMs: 60_000,
  startupWaitMs: 30_000,
  taskRetentionMs: 24 * 3600 * 1000,
  historyRetentionMs: 90 * 24 * 3600 * 1000,
  webhookSecrets: [],
  webhookAllowHttp: false,
  webhookAllowedHosts: [],
  webhookSchedule: [...STANDARD_WEBHOOKS_SCHEDULE_MS],
  webhookJitter: 0.2,
  webhookTimeoutMs: 10_000,
  webhookMaxRetryAfterMs: 3_600_000,
  webhookConcurrency: 16,
  supervisorMetricsPort: 9464,
  backgroundRefreshEnabled: true,
  apiKeyCacheTtlMs: 30_000,
  apiKeyNegativeCacheTtlMs: 5_000,
  dashboardEnabled: true,
  dashboardReadOnly: false,
  dashboardSessionTtlMs: 8 * 3_600_000,
  rateLimitEnqueue: 600,
  rateLimitRead: 1200,
  rateLimitWindowS: 60,
};

/** Splits a comma-separated list, dropping blanks. */
function parseList(raw: string | undefined): string[] {
  return (raw ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

/** true/false/1/0/yes/no; anything else is passed on for the schema to reject by name. */
function parseBoolean(raw: string): boolean | string {
  const value = raw.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(value)) return true;
  if (["false", "0", "no", "off"].includes(value)) return false;
  return raw;
}

function parseNumber(raw: string): number | string {
  const n = Number(raw.trim());
  return raw.trim() === "" || Number.isNaN(n) ? raw : n;
}

/**
 * A `host:port,host:port` list (AGENTQ_REDIS_SENTINELS); an IPv6 host in brackets, `[::1]:26379`.
 * Every entry needs its port: a sentinel's default (26379) is not a Redis server's, and an entry
 * written without one is more likely a Redis address pasted by mistake.
 */
export function parseHostPortList(raw: string): { entries: { host: string; port: number }[] } | { problems: string[] } {
  const entries: { host: string; port: number }[] = [];
  const problems: string[] = [];
  for (const item of parseList(raw)) {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s\[\]]+)):(\d{1,5})$/.exec(item);
    const port = match ? Number(match[3]) : Number.NaN;
    if (!match || port < 1 || port > 65535) problems.push(`${JSON.stringify(item)} is not host:port (a port from 1 to 65535)`);
    else entries.push({ host: match[1] ?? match[2]!, port });
  }
  if (entries.length === 0 && problems.length === 0) problems.push("no host:port in the list");
  return problems.length > 0 ? { problems } : { entries };
}

/** The sentinel settings that only make sense together (checked after the overrides are merged). */
function sentinelProblems(c: Pick<Config, "redisSentinels" | "redisSentinelName" | "redisSentinelPassword">): string[] {
  const set = Array.isArray(c.redisSentinels) && c.redisSentinels.length > 0;
  if (set && !c.redisSentinelName)
    return [`${ENV_NAMES.redisSentinelName}: required with ${ENV_NAMES.redisSentinels} (the name of the sentinels' "sentinel monitor <name> ..." line)`];
  if (!set && c.redisSentinelName) return [`${ENV_NAMES.redisSentinelName}: set without ${ENV_NAMES.redisSentinels} (set both, or neither to use REDIS_URL's server)`];
  if (!set && c.redisSentinelPassword) return [`${ENV_NAMES.redisSentinelPassword}: set without ${ENV_NAMES.redisSentinels}`];
  return [];
}

/**
 * Redis Cluster excludes Sentinel (a cluster fails over by itself; ioredis cannot combine the
 * two), and has database 0 only, so a REDIS_URL naming another database is a mistake to report.
 */
function clusterProblems(c: Pick<Config, "redisClusterNodes" | "redisSentinels" | "redisUrl">): string[] {
  if (!Array.isArray(c.redisClusterNodes) || c.redisClusterNodes.length === 0) return [];
  if (Array.isArray(c.redisSentinels) && c.redisSentinels.length > 0)
    return [`${ENV_NAMES.redisClusterNodes}: set together with ${ENV_NAMES.redisSentinels}; choose one (a cluster fails over by itself, without sentinels)`];
  const db = typeof c.redisUrl === "string" && URL.canParse(c.redisUrl) ? new URL(c.redisUrl).pathname.replace(/^\//, "") : "";
  if (db !== "" && db !== "0")
    return [`${ENV_NAMES.redisUrl}: names database ${JSON.stringify(db)}, but Redis Cluster has database 0 only (with ${ENV_NAMES.redisClusterNodes}, REDIS_URL gives only the credentials and the scheme)`];
  return [];
}

/** The older way to set the webhook schedule: N retries, the first after B ms, doubling. */
export const WEBHOOK_RETRIES_ENV = "AGENTQ_WEBHOOK_RETRIES";
export const WEBHOOK_BACKOFF_ENV = "AGENTQ_WEBHOOK_BACKOFF_MS";
/** Their values when only one of the two is set (the original plan's 1 s, 2 s, 4 s). */
export const LEGACY_WEBHOOK_DEFAULTS = { retries: 3, backoffMs: 1000 } as const;

/**
 * The webhook retry schedule, by precedence:
 *  1. AGENTQ_WEBHOOK_SCHEDULE, a comma-separated list of durations (`5s,5m,30m,2h`);
 *  2. else, when AGENTQ_WEBHOOK_RETRIES or AGENTQ_WEBHOOK_BACKOFF_MS is set, their doubling
 *     schedule (RETRIES waits, the first BACKOFF_MS, each next twice as long; the one not set
 *     takes its old default, 3 or 1000);
 *  3. else the Standard Webhooks schedule (DEFAULTS).
 * Setting both 1 and 2 is refused: one of them would be silently ignored.
 */
function webhookSchedule(value: (name: string) => string | undefined): { schedule: number[] } | { problems: string[] } {
  const listed = value(ENV_NAMES.webhookSchedule);
  const retries = value(WEBHOOK_RETRIES_ENV);
  const backoff = value(WEBHOOK_BACKOFF_ENV);
  if (listed !== undefined) {
    if (retries !== undefined || backoff !== undefined) {
      const others = [retries !== undefined && WEBHOOK_RETRIES_ENV, backoff !== undefined && WEBHOOK_BACKOFF_ENV].filter(Boolean).join(" and ");
      return { problems: [`${ENV_NAMES.webhookSchedule}: set it or ${others}, not both (the schedule replaces them; see README, Configuration)`] };
    }
    const parsed = parseSchedule(listed);
    if ("problems" in parsed) return { problems: parsed.problems.map((p) => `${ENV_NAMES.webhookSchedule}: ${p} (got ${JSON.stringify(listed)})`) };
    return parsed;
  }
  if (retries === undefined && backoff === undefined) return { schedule: [...DEFAULTS.webhookSchedule] };
  const problems: string[] = [];
  const n = retries === undefined ? LEGACY_WEBHOOK_DEFAULTS.retries : parseNumber(retries);
  const b = backoff === undefined ? LEGACY_WEBHOOK_DEFAULTS.backoffMs : parseNumber(backoff);
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 20)
    problems.push(`${WEBHOOK_RETRIES_ENV}: Expected an integer from 0 to 20 (got ${JSON.stringify(retries)})`);
  if (typeof b !== "number" || !Number.isInteger(b) || b < 0)
    problems.push(`${WEBHOOK_BACKOFF_ENV}: Expected an integer of at least 0 (got ${JSON.stringify(backoff)})`);
  if (problems.length > 0) return { problems };
  const schedule = doublingSchedule(n as number, b as number);
  if (schedule.some((ms) => ms > MAX_STEP_MS))
    return { problems: [`${WEBHOOK_RETRIES_ENV}/${WEBHOOK_BACKOFF_ENV}: the last doubled wait, ${schedule.at(-1)} ms, is longer than 30 days`] };
  return { schedule };
}

/**
 * One problem in words. `t.Integer` is a union (an integer, or a string of one), whose failure
 * TypeBox words as "Expected union value": say which integers are accepted instead.
 */
function describeIssue(e: { message: string; schema: unknown }): string {
  const schema = e.schema as { anyOf?: { type?: string }[]; minimum?: number; maximum?: number };
  if (!schema.anyOf?.some((member) => member.type === "integer")) return e.message;
  const { minimum: min, maximum: max } = schema;
  if (min !== undefined && max !== undefined) return `Expected an integer from ${min} to ${max}`;
  if (min !== undefined) return `Expected an integer of at least ${min}`;
  return max !== undefined ? `Expected an integer of at most ${max}` : "Expected an integer";
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
  const bool = (key: keyof Config) => {
    const raw = pick(key);
    return raw === undefined ? DEFAULTS[key] : parseBoolean(raw);
  };
  const schedule = webhookSchedule((name) => (env[name] === undefined || env[name] === "" ? undefined : env[name]));
  // An override (tests, benchmarks) replaces the environment's schedule, and its problems.
  const scheduleProblems = "problems" in schedule && overrides.webhookSchedule === undefined ? schedule.problems : [];
  const rawSentinels = pick("redisSentinels");
  const sentinels = rawSentinels === undefined ? { entries: DEFAULTS.redisSentinels } : parseHostPortList(rawSentinels);
  const sentinelListProblems =
    "problems" in sentinels && overrides.redisSentinels === undefined
      ? sentinels.problems.map((p) => `${ENV_NAMES.redisSentinels}: ${p} (got ${JSON.stringify(rawSentinels)})`)
      : [];
  const rawClusterNodes = pick("redisClusterNodes");
  const clusterNodes = rawClusterNodes === undefined ? { entries: DEFAULTS.redisClusterNodes } : parseHostPortList(rawClusterNodes);
  const clusterListProblems =
    "problems" in clusterNodes && overrides.redisClusterNodes === undefined
      ? clusterNodes.problems.map((p) => `${ENV_NAMES.redisClusterNodes}: ${p} (got ${JSON.stringify(rawClusterNodes)})`)
      : [];
  const candidate: Record<keyof Config, unknown> = {
    databaseUrl: pick("databaseUrl") ?? DEFAULTS.databaseUrl,
    redisUrl: pick("redisUrl") ?? DEFAULTS.redisUrl,
    redisSentinels: "entries" in sentinels ? sentinels.entries : DEFAULTS.redisSentinels,
    redisSentinelName: pick("redisSentinelName") ?? DEFAULTS.redisSentinelName,
    redisSentinelPassword: pick("redisSentinelPassword") ?? DEFAULTS.redisSentinelPassword,
    redisClusterNodes: "entries" in clusterNodes ? clusterNodes.entries : DEFAULTS.redisClusterNodes,
    redisPrefix: pick("redisPrefix") ?? DEFAULTS.redisPrefix,
    host: pick("host") ?? DEFAULTS.host,
    port: num("port"),
    sseHeartbeatMs: num("sseHeartbeatMs"),
    sseClientBufferBytes: num("sseClientBufferBytes"),
    sseMaxClients: num("sseMaxClients"),
    apiKeys: parseList(pick("apiKeys")),
    confidenceThreshold: num("confidenceThreshold"),
    defaultTargetDocuments: num("defaultTargetDocuments"),
    maxBodyBytes: num("maxBodyBytes"),
    maxJsonDepth: num("maxJsonDepth"),
    maxConfigDepth: num("maxConfigDepth"),
    maxConfigBytes: num("maxConfigBytes"),
    bulkMaxDocuments: num("bulkMaxDocuments"),
    bulkMaxTasks: num("bulkMaxTasks"),
    bulkMaxAgents: num("bulkMaxAgents"),
    logLevel: pick("logLevel") ?? DEFAULTS.logLevel,
    workers: num("workers"),
    workerConcurrency: num("workerConcurrency"),
    claimCooldownMs: num("claimCooldownMs"),
    taskTimeoutMs: num("taskTimeoutMs"),
    maxAttempts: num("maxAttempts"),
    leaseMs: num("leaseMs"),
    cancelGraceMs: num("cancelGraceMs"),
    drainDeadlineMs: num("drainDeadlineMs"),
    reconcileEveryMs: num("reconcileEveryMs"),
    scheduleEveryMs: num("scheduleEveryMs"),
    stalePendingMs: num("stalePendingMs"),
    restartMax: num("restartMax"),
    restartWindowMs: num("restartWindowMs"),
    startupWaitMs: num("startupWaitMs"),
    taskRetentionMs: num("taskRetentionMs"),
    historyRetentionMs: num("historyRetentionMs"),
    webhookSecrets: parseList(pick("webhookSecrets")),
    webhookAllowHttp: bool("webhookAllowHttp"),
    webhookAllowedHosts: parseList(pick("webhookAllowedHosts")).map((host) => host.toLowerCase()),
    webhookSchedule: "schedule" in schedule ? schedule.schedule : DEFAULTS.webhookSchedule,
    webhookJitter: num("webhookJitter"),
    webhookTimeoutMs: num("webhookTimeoutMs"),
    webhookMaxRetryAfterMs: num("webhookMaxRetryAfterMs"),
    webhookConcurrency: num("webhookConcurrency"),
    supervisorMetricsPort: num("supervisorMetricsPort"),
    backgroundRefreshEnabled: bool("backgroundRefreshEnabled"),
    apiKeyCacheTtlMs: num("apiKeyCacheTtlMs"),
    apiKeyNegativeCacheTtlMs: num("apiKeyNegativeCacheTtlMs"),
    dashboardEnabled: bool("dashboardEnabled"),
    dashboardReadOnly: bool("dashboardReadOnly"),
    dashboardSessionTtlMs: num("dashboardSessionTtlMs"),
    rateLimitEnqueue: num("rateLimitEnqueue"),
    rateLimitRead: num("rateLimitRead"),
    rateLimitWindowS: num("rateLimitWindowS"),
    ...overrides,
  };
  // A bad list already says what is wrong with the sentinels; the pairing check would only add noise.
  const pairingProblems = sentinelListProblems.length > 0 ? [] : sentinelProblems(candidate as Config);
  const listProblems = [
    ...scheduleProblems,
    ...sentinelListProblems,
    ...pairingProblems,
    ...clusterListProblems,
    ...(clusterListProblems.length > 0 ? [] : clusterProblems(candidate as Config)),
  ];
  if (listProblems.length > 0 || !Value.Check(ConfigSchema, candidate)) {
    const problems = [...Value.Errors(ConfigSchema, candidate)].map((e) => {
      const field = e.path.split("/")[1] as keyof Config | undefined;
      const name = field ? ENV_NAMES[field] ?? field : "config";
      return `${name}: ${describeIssue(e)} (got ${JSON.stringify(e.value)})`;
    });
    throw new ConfigError([...listProblems, ...problems]);
  }
  return candidate as Config;
}
