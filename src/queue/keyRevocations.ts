/**
 * The API-key revocation bus: Redis pub/sub on `keys.apiKeyRevokedChannel`.
 *
 * A revoke (src/auth/apiKeys.ts, after PostgreSQL committed it) publishes the
 * revoked key ids as a JSON array; every API process listening drops them from
 * its key cache at once. Listeners in the publishing process are told
 * synchronously, before the PUBLISH, so that process never depends on Redis
 * for its own revokes.
 *
 * Pub/sub is fire-and-forget: a message sent while a listener's connection is
 * down is lost. So every time the subscription is (re)established, listeners
 * get `reset()` and drop everything they cached; while it is down, their
 * cache TTL bounds how long a revoked key can still be accepted.
 */
import type { RedisClient } from "./redisClient.ts";
import { duplicateRedis } from "./connection.ts";
import type { Logger } from "pino";
import type { QueueKeys } from "./keys.ts";

export interface RevocationListener {
  /** These key ids were revoked: forget them now. */
  revoked(keyIds: readonly string[]): void;
  /** Messages may have been missed (the subscription just started or came back): forget every cached key. */
  reset(): void;
}

const KEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Parses a message; null when it is not a JSON array of key ids (treated as "forget everything"). */
export function parseRevocation(message: string): string[] | null {
  try {
    const ids: unknown = JSON.parse(message);
    if (Array.isArray(ids) && ids.every((id) => typeof id === "string" && KEY_ID.test(id))) return ids.map((id: string) => id.toLowerCase());
  } catch {
    // falls through
  }
  return null;
}

export class KeyRevocations {
  private readonly listeners = new Set<RevocationListener>();
  private subscriber: RedisClient | null = null;
  private subscribed = false;
  private closed = false;
  private waiting: (() => void)[] = [];

  /**
   * `redis` publishes; listening opens a connection of its own (a duplicate of
   * it: a subscribed connection runs no other commands).
   */
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
    private readonly logger?: Logger,
  ) {}

  /**
   * Tells this process's listeners (synchronously), then every other process.
   * Rejects when Redis is unreachable; the local listeners were told anyway.
   */
  async publish(keyIds: readonly string[]): Promise<void> {
    if (keyIds.length === 0) return;
    const ids = keyIds.map((id) => id.toLowerCase());
    this.deliver(ids);
    await this.redis.publish(this.keys.apiKeyRevokedChannel, JSON.stringify(ids));
  }

  /** Registers a listener and starts the subscription (once); returns the function that removes it. */
  listen(listener: RevocationListener): () => void {
    if (this.closed) throw new Error("KeyRevocations is closed");
    this.listeners.add(listener);
    this.subscriber ??= this.subscribe();
    return () => void this.listeners.delete(listener);
  }

  /** True while the subscription is confirmed by Redis (revokes elsewhere reach this process). */
  get live(): boolean {
    return this.subscribed;
  }

  /** The subscriber connection, once listening (diagnostics and tests). */
  get connection(): RedisClient | null {
    return this.subscriber;
  }

  /** Resolves once the subscription is live (at once if it is). */
  ready(): Promise<void> {
    if (this.subscribed) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  close(): void {
    this.closed = true;
    this.subscribed = false;
    this.listeners.clear();
    this.subscriber?.disconnect();
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  private subscribe(): RedisClient {
    const channel = this.keys.apiKeyRevokedChannel;
    // Resubscribed by hand on every `ready`, so the listeners are reset only once Redis confirmed it.
    const subscriber = duplicateRedis(this.redis, { autoResubscribe: false, enableAutoPipelining: false, maxRetriesPerRequest: null });
    subscriber.on("error", (error) => this.logger?.warn({ err: error }, "redis error on the API key revocation subscriber"));
    subscriber.on("close", () => {
      if (this.closed || !this.subscribed) return;
      this.subscribed = false;
      this.logger?.warn(
        "API key revocations are not received while Redis is unreachable; cached keys expire by AGENTQ_API_KEY_CACHE_TTL_MS",
      );
    });
    subscriber.on("ready", () => {
      subscriber.subscribe(channel).then(
        () => {
          if (this.closed) return;
          this.subscribed = true;
          // Anything published while we were not subscribed is lost: start from an empty cache.
          for (const l of this.listeners) l.reset();
          for (const resolve of this.waiting.splice(0)) resolve();
        },
        (error) => this.logger?.warn({ err: error }, "could not subscribe to API key revocations"),
      );
    });
    subscriber.on("message", (from: string, message: string) => {
      if (from !== channel) return;
      const ids = parseRevocation(message);
      if (ids) this.deliver(ids);
      else {
        this.logger?.warn({ message: message.slice(0, 200) }, "malformed API key revocation; forgetting every cached key");
        for (const l of this.listeners) l.reset();
      }
    });
    return subscriber;
  }

  private deliver(ids: readonly string[]) {
    for (const l of this.listeners) l.revoked(ids);
  }
}
