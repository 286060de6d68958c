/**
 * Every Redis key and pub/sub channel name agentq uses, in one place. Every one of them
 * starts with `<prefix>:{coverage}:`, so on Redis Cluster a deployment's keys all live in ONE
 * hash slot (Redis hashes only the text inside the first `{...}`; the prefix cannot contain
 * a brace, see ConfigSchema.redisPrefix): multi-key commands (BZPOPMIN over the three
 * priorities), the Lua scripts over several keys and pipelines all run on one node. Channels
 * carry the tag too, although classic pub/sub is broadcast to the whole cluster whatever the
 * name: one naming rule, and a cleanup by `pattern` finds everything of a prefix on one node.
 * test/unit/keys-slot.test.ts checks every name against CRC16.
 *
 *   <prefix>:{coverage}:queue:high|medium|low   sorted sets of pending task ids, score = enqueue time (ms)
 *   <prefix>:{coverage}:parked:<agent id>        sorted set: pending ids of an agent at its max_concurrent_refreshes, popped
 *                                                and deferred by the claim (src/queue/parking.ts); score = priority rank x 1e13
 *                                                + enqueue time (ms); back into the queues as the agent's tasks end
 *   <prefix>:{coverage}:parked:<agent id>:credit counter: places freed while the park was empty (a deferral may be in flight),
 *                                                expiring after a second; the next park of the agent releases that many
 *   <prefix>:{coverage}:cancel                   pub/sub channel: ids of tasks to cancel
 *   <prefix>:{coverage}:api-key-revoked          pub/sub channel: JSON arrays of revoked API key ids (src/queue/keyRevocations.ts)
 *   <prefix>:{coverage}:task-events              pub/sub channel: live task events, "<first id> <JSON array>" (src/queue/taskEvents.ts)
 *   <prefix>:{coverage}:task-events:seq          counter: the last task event id given out (INCRBY per batch)
 *   <prefix>:{coverage}:capacity                 hash supervisor id -> {"workers","busy","expires"} JSON
 *   <prefix>:{coverage}:runtimes                 list of recent run times (ms), newest first, capped
 *   <prefix>:{coverage}:lock:<job>               singleton locks (reconciler, retention)
 *   <prefix>:{coverage}:ratelimit:<policy>:<caller>
 *                                                requests of one API key in the current window of a policy (enqueue, read),
 *                                                expiring with it (src/queue/rateLimits.ts); caller: stored:<key id> or
 *                                                static:<SHA-256 of the key>, never the key
 *   <prefix>:{coverage}:dashboard:session:<sha256 of token>
 *                                                a dashboard session, JSON, expiring with it (src/dashboard/sessions.ts).
 *                                                Only single-key commands touch it, but it is in the slot all the same:
 *                                                a deployment then depends on one primary, not two, and the prefix's
 *                                                keys are all found on one node (it moved there from
 *                                                <prefix>:dashboard:session:…, which signed dashboard users out once)
 */
import type { Priority } from "../core/tasks.ts";

export interface QueueKeys {
  queue(priority: Priority): string;
  /** Highest priority first: the order BZPOPMIN must scan. */
  queues: readonly string[];
  /** An agent's parked tasks: popped, deferred by its max_concurrent_refreshes, waiting for a slot of its own. */
  parked(agentId: string): string;
  /** Places of an agent freed while its park was empty: the next park releases that many at once. */
  parkCredit(agentId: string): string;
  cancelChannel: string;
  /** Pub/sub channel on which a revoke tells every API process to drop the key from its cache. */
  apiKeyRevokedChannel: string;
  /** Pub/sub channel of live task events (progress and status changes), read by every API process. */
  taskEventsChannel: string;
  /** Counter giving task events their ids: one INCRBY per published batch. */
  taskEventSeq: string;
  capacity: string;
  runtimes: string;
  lock(job: string): string;
  /** Prefix of one rate-limit policy's counters; a caller's counter is `<this>:<caller>` (rate-limiter-flexible's keyPrefix). */
  rateLimit(policy: string): string;
  /** A dashboard session, by the SHA-256 (hex) of its cookie token. */
  dashboardSession(tokenHash: string): string;
  /**
   * Every key of this prefix (for cleanup in tests and tooling). On a cluster, KEYS and SCAN
   * see one node only: use keysOfPrefix / deletePrefixKeys (src/queue/prefixKeys.ts).
   */
  pattern: string;
}

export function queueKeys(prefix: string): QueueKeys {
  const base = `${prefix}:{coverage}`;
  const queue = (priority: Priority) => `${base}:queue:${priority}`;
  return {
    queue,
    queues: [queue("high"), queue("medium"), queue("low")],
    parked: (agentId) => `${base}:parked:${agentId}`,
    parkCredit: (agentId) => `${base}:parked:${agentId}:credit`,
    cancelChannel: `${base}:cancel`,
    apiKeyRevokedChannel: `${base}:api-key-revoked`,
    taskEventsChannel: `${base}:task-events`,
    taskEventSeq: `${base}:task-events:seq`,
    capacity: `${base}:capacity`,
    runtimes: `${base}:runtimes`,
    lock: (job) => `${base}:lock:${job}`,
    rateLimit: (policy) => `${base}:ratelimit:${policy}`,
    dashboardSession: (tokenHash) => `${base}:dashboard:session:${tokenHash}`,
    pattern: `${prefix}:*`,
  };
}

export function priorityOfQueue(keys: QueueKeys, key: string): Priority {
  if (key === keys.queue("high")) return "high";
  if (key === keys.queue("medium")) return "medium";
  if (key === keys.queue("low")) return "low";
  throw new Error(`not a queue key: ${key}`);
}
