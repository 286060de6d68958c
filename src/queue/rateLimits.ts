/**
 * Per-API-key rate limits, counted in Redis so that every API process spends the same budget:
 * one fixed-window counter per policy and caller, `<prefix>:{coverage}:ratelimit:<policy>:<caller>`,
 * incremented and given its expiry by one Lua script (rate-limiter-flexible's RateLimiterRedis).
 *
 * A caller over its budget is remembered in this process until its window ends, so a flood
 * from that key costs no Redis round trip. When Redis cannot be asked (the client has lost its
 * connection, a command fails, or no answer comes within `timeoutMs`), the request is allowed
 * unchecked: a rate limiter must never lock every client out. Each such request is counted in
 * agentq_rate_limit_errors_total and a warning is logged, at most once per `warnEveryMs`.
 */
import type { RedisClient } from "./redisClient.ts";
import type { Logger } from "pino";
import { RateLimiterRedis, RateLimiterRes, RLWrapperTimeouts } from "rate-limiter-flexible";
import type { Metrics, RATE_LIMIT_POLICIES } from "../metrics/registry.ts";
import type { QueueKeys } from "./keys.ts";

export type RateLimitPolicy = (typeof RATE_LIMIT_POLICIES)[number];

/** How long a request waits for Redis's answer before it is let through unchecked. */
export const RATE_LIMIT_TIMEOUT_MS = 100;
/** At most one "rate limiter unavailable" warning this often (the failures in between are counted in it). */
export const RATE_LIMIT_WARN_EVERY_MS = 10_000;

/** The client has no connection now: asking would only wait in its offline queue. */
const DISCONNECTED = new Set(["reconnecting", "close", "end"]);

export interface RateLimitSpec {
  /** Requests per window. */
  limit: number;
  windowS: number;
}

export type RateLimitDecision =
  /** Counted: `remaining` requests left in the window, which ends in `resetS` seconds. */
  | { outcome: "allowed"; remaining: number; resetS: number }
  /** Over the budget: none left until the window ends in `resetS` seconds (at least 1). */
  | { outcome: "limited"; remaining: 0; resetS: number }
  /** Redis could not be asked: let through without counting. */
  | { outcome: "unchecked" };

export interface RateLimitsOptions {
  /** Requests per window for each policy; 0 turns the policy off. */
  limits: Record<RateLimitPolicy, number>;
  windowS: number;
  logger: Pick<Logger, "warn">;
  metrics: Pick<Metrics, "rateLimitErrors">;
  timeoutMs?: number;
  warnEveryMs?: number;
}

export class RateLimits {
  private readonly limiters = new Map<RateLimitPolicy, { spec: RateLimitSpec; limiter: RLWrapperTimeouts }>();
  private readonly warnEveryMs: number;
  private lastWarning = Number.NEGATIVE_INFINITY;
  private unwarned = 0;

  constructor(
    private readonly redis: RedisClient,
    keys: Pick<QueueKeys, "rateLimit">,
    private readonly options: RateLimitsOptions,
  ) {
    this.warnEveryMs = options.warnEveryMs ?? RATE_LIMIT_WARN_EVERY_MS;
    for (const [policy, limit] of Object.entries(options.limits) as [RateLimitPolicy, number][]) {
      if (limit <= 0) continue;
      const store = new RateLimiterRedis({
        storeClient: redis,
        // ioredis, the library's default client: `useRedisPackage` is for node-redis.
        useRedisPackage: false,
        keyPrefix: keys.rateLimit(policy),
        points: limit,
        duration: options.windowS,
        // The first refused request blocks the caller in this process until the window ends.
        inMemoryBlockOnConsumed: limit + 1,
      });
      const limiter = new RLWrapperTimeouts({ limiter: store, timeoutMs: options.timeoutMs ?? RATE_LIMIT_TIMEOUT_MS });
      this.limiters.set(policy, { spec: { limit, windowS: options.windowS }, limiter });
    }
  }

  /** The policy's limit, or null when it is turned off. */
  spec(policy: RateLimitPolicy): RateLimitSpec | null {
    return this.limiters.get(policy)?.spec ?? null;
  }

  /** Spends one request of `caller`'s budget for `policy` (which must be on). Never rejects. */
  async consume(policy: RateLimitPolicy, caller: string): Promise<RateLimitDecision> {
    const entry = this.limiters.get(policy);
    if (!entry) throw new Error(`rate-limit policy ${policy} is off`);
    try {
      if (DISCONNECTED.has(this.redis.status)) throw new Error(`Redis connection is ${this.redis.status}`);
      const res = await entry.limiter.consume(caller);
      return { outcome: "allowed", remaining: res.remainingPoints, resetS: resetSeconds(res) };
    } catch (error) {
      if (error instanceof RateLimiterRes) return { outcome: "limited", remaining: 0, resetS: Math.max(1, resetSeconds(error)) };
      this.failedOpen(policy, error);
      return { outcome: "unchecked" };
    }
  }

  private failedOpen(policy: RateLimitPolicy, error: unknown) {
    this.options.metrics.rateLimitErrors.inc({ policy });
    this.unwarned++;
    const now = Date.now();
    if (now - this.lastWarning < this.warnEveryMs) return;
    this.options.logger.warn(
      { policy, err: error instanceof Error ? error.message : String(error), requests_unchecked: this.unwarned },
      "rate limiter cannot reach Redis; requests are let through unchecked",
    );
    this.lastWarning = now;
    this.unwarned = 0;
  }
}

/** Whole seconds until the window ends (the draft's `t`, and Retry-After): rounded up. */
const resetSeconds = (res: RateLimiterRes) => Math.max(0, Math.ceil(res.msBeforeNext / 1000));
