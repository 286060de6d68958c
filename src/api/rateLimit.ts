/**
 * Rate limits of the API, per API key (the counting is in src/queue/rateLimits.ts, in Redis,
 * shared by every API process). Two budgets per key:
 *
 *  - `enqueue`: the POST routes that create tasks: a refresh (`/agents/{id}/coverage/refresh`,
 *    also with background=false, which computes at once and costs more), a bulk refresh
 *    (`/coverage/refresh`), a retry (`/tasks/{id}/retry`) and a redrive (`/tasks/retry`);
 *  - `read`: every other authenticated /api/v1 request, other writes included (corpus and agent
 *    writes, schedules, cancels, webhook redeliveries), so a key that spent its enqueue budget
 *    can still read and cancel.
 *
 * Checked after authentication, before routing and parsing: an unauthenticated request spends
 * nothing (it is a 401), and /healthz, /readyz, /metrics, /swagger and /dashboard are outside
 * /api/v1. Every counted response carries the `RateLimit-Policy` and `RateLimit` fields of
 * draft-ietf-httpapi-ratelimit-headers; a refused one is a 429 `rate_limited` in the error
 * shape, through the app's error handler, with `Retry-After`.
 */
import { AppError } from "../core/errors.ts";
import { hashKey } from "../auth/apiKeys.ts";
import { principalOf, type Principal } from "../dashboard/sessions.ts";
import type { RateLimitPolicy, RateLimits } from "../queue/rateLimits.ts";

/** The task-creating routes, as paths under /api/v1 (method POST). */
const ENQUEUE_PATH = /^\/api\/v1\/(?:agents\/[^/]+\/coverage\/refresh|coverage\/refresh|tasks\/[^/]+\/retry|tasks\/retry)$/;

export const rateLimitPolicyOf = (method: string, path: string): RateLimitPolicy =>
  method.toUpperCase() === "POST" && ENQUEUE_PATH.test(path) ? "enqueue" : "read";

const STORED_KEY_SHAPE = /^aq_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/;

/**
 * Who a key the verifier accepted belongs to, as a dashboard session names it: a stored key by
 * its id, anything else (a static key) by its SHA-256.
 */
export const keyPrincipal = (key: string, staticKeys: readonly string[]): Principal =>
  STORED_KEY_SHAPE.test(key) ? principalOf(key, staticKeys) : { kind: "static", keyHash: hashKey(key).toString("hex") };

/** The counter's name for a caller: the stored key's id, or the SHA-256 of a static key; never the key. */
export const callerId = (principal: Principal) =>
  principal.kind === "stored" ? `stored:${principal.keyId}` : `static:${principal.keyHash}`;

/**
 * Spends one request of the caller's budget for this route; sets the RateLimit fields on the
 * response and throws 429 `rate_limited` when it is spent. Lets the request through unchecked
 * (no fields) when the policy is off or Redis cannot be asked.
 */
export function rateLimitCheck(limits: RateLimits) {
  return async (request: Request, path: string, principal: Principal, headers: Record<string, unknown>): Promise<void> => {
    const policy = rateLimitPolicyOf(request.method, path);
    const spec = limits.spec(policy);
    if (!spec) return;
    const decision = await limits.consume(policy, callerId(principal));
    if (decision.outcome === "unchecked") return;
    // Structured fields: the policy's name is a String item; q quota, w window (s); r remaining, t seconds to reset.
    headers["ratelimit-policy"] = `"${policy}";q=${spec.limit};w=${spec.windowS}`;
    headers.ratelimit = `"${policy}";r=${decision.remaining};t=${decision.resetS}`;
    if (decision.outcome === "allowed") return;
    headers["retry-after"] = String(decision.resetS);
    throw new AppError(
      "rate_limited",
      `this API key has used its ${spec.limit} ${policy} requests per ${spec.windowS} s; retry in ${decision.resetS} s`,
      { policy, limit: spec.limit, window_s: spec.windowS, retry_after_s: decision.resetS },
    );
  };
}
