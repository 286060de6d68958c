/**
 * The webhook sender: a long-lived service of the supervisor process (never a
 * worker actor: a worker must not wait on a client's server).
 *
 *   outbox row (trigger, same transaction as the task's end)
 *     -> NOTIFY wakes a sender (a periodic sweep covers lost notifications and
 *        deliveries whose sender died: their lock lapses and they are claimed again)
 *     -> claim (locked for one attempt + margin)
 *     -> p-retry: attempt, record it, back off (1 s, 2 s, 4 s by default; longer
 *        when the receiver asks with Retry-After), until delivered or dead.
 *
 * Delivery is at least once: a sender that dies after the receiver answered but
 * before the attempt was recorded is repeated by another sender with the same
 * `webhook-id`, which receivers use to ignore duplicates.
 */
import pRetry, { AbortError } from "p-retry";
import type { Logger } from "pino";
import { randomBytes } from "node:crypto";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import { toIsoOrNull } from "../db/values.ts";
import {
  claimDueDeliveries,
  recordAttempt,
  releaseDeliveries,
  scheduleRetry,
  WEBHOOK_CHANNEL,
  type ClaimedDelivery,
} from "../db/webhooks.ts";
import type { Metrics } from "../metrics/registry.ts";
import { attemptDelivery, type AttemptOutcome } from "./deliver.ts";
import { signWebhook } from "./signing.ts";
import type { Resolver } from "./urlSafety.ts";

export interface WebhookSenderOptions {
  config: Config;
  database: Database;
  logger: Logger;
  metrics?: Metrics;
  id?: string;
  /** DNS resolver; tests pass one that answers differently over time (rebinding). */
  resolve?: Resolver;
  /** How often to look for due deliveries when no notification arrives (default: the reconcile period). */
  sweepEveryMs?: number;
}

/** Slack on top of the attempt timeout (at most the timeout itself) before another sender may take a delivery over. */
const LOCK_MARGIN_MS = 5_000;

/** The payload as sent: fixed key order, so every attempt sends the same bytes. */
export function serializePayload(payload: Record<string, unknown>): string {
  return JSON.stringify({
    task_id: payload.task_id,
    agent_id: payload.agent_id,
    status: payload.status,
    result: payload.result ?? null,
    error: payload.error ?? null,
    completed_at: toIsoOrNull(payload.completed_at as string | null),
  });
}

/** The delivery is over for this sender (dead, or taken over): nothing to retry. */
class DeliveryEnded extends Error {}

/** A sleep that ends early when the sender stops. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

class RetryableAttempt extends Error {
  constructor(
    readonly outcome: AttemptOutcome,
    readonly attemptRowId: number,
  ) {
    super(outcome.error ?? outcome.result);
  }
}

export class WebhookSender {
  readonly id: string;
  private running = false;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly stopping = new AbortController();
  private wakeUp: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private unlisten: (() => Promise<void>) | null = null;
  private readonly lockMs: number;

  constructor(private readonly options: WebhookSenderOptions) {
    this.id = options.id ?? `webhooks-${randomBytes(4).toString("hex")}`;
    this.lockMs = options.config.webhookTimeoutMs + Math.min(LOCK_MARGIN_MS, options.config.webhookTimeoutMs);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const listening = await this.options.database.sql.listen(WEBHOOK_CHANNEL, () => this.poke());
      this.unlisten = () => listening.unlisten();
    } catch (error) {
      this.options.logger.warn({ err: error }, "webhook sender could not LISTEN; relying on its sweep");
    }
    this.loop = this.run();
  }

  /** Stops claiming, aborts attempts in flight and hands their deliveries back for another sender. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopping.abort(new Error("webhook sender stopping"));
    this.poke();
    await this.loop;
    await Promise.allSettled(this.inFlight.values());
    await this.unlisten?.().catch(() => {});
    await releaseDeliveries(this.options.database.db, this.id).catch((error) =>
      this.options.logger.warn({ err: error }, "could not release webhook deliveries; their locks will lapse"),
    );
  }

  /** Deliveries being worked on now. */
  get busy(): number {
    return this.inFlight.size;
  }

  private poke() {
    const wake = this.wakeUp;
    this.wakeUp = null;
    wake?.();
  }

  private async run() {
    const { config, database, logger } = this.options;
    const sweepMs = this.options.sweepEveryMs ?? config.reconcileEveryMs;
    while (this.running) {
      const free = config.webhookConcurrency - this.inFlight.size;
      let claimed: ClaimedDelivery[] = [];
      if (free > 0) {
        try {
          claimed = await claimDueDeliveries(database.db, this.id, free, this.lockMs);
        } catch (error) {
          logger.warn({ err: error }, "claiming webhook deliveries failed; retrying at the next sweep");
        }
        for (const delivery of claimed) this.launch(delivery);
      }
      // A full batch may mean more are due: claim again before waiting.
      if (free > 0 && claimed.length === free) continue;
      if (!this.running) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, sweepMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  private launch(delivery: ClaimedDelivery) {
    const work = this.deliver(delivery)
      .catch((error) => {
        if (!this.stopping.signal.aborted)
          this.options.logger.error({ task_id: delivery.taskId, err: error }, "webhook delivery stopped unexpectedly");
      })
      .finally(() => {
        this.inFlight.delete(delivery.taskId);
        this.poke(); // a slot is free
      });
    this.inFlight.set(delivery.taskId, work);
  }

  private async deliver(delivery: ClaimedDelivery): Promise<void> {
    const { config, database, logger, metrics } = this.options;
    const body = serializePayload(delivery.payload);
    const attemptsLeft = Math.max(1, config.webhookRetries + 1 - delivery.roundAttempts);
    const log = logger.child({ task_id: delivery.taskId, webhook_id: delivery.webhookId });
    const signal = this.stopping.signal;

    await pRetry(
      async (attemptNumber) => {
        const headers = signWebhook({ id: delivery.webhookId, timestampSeconds: Math.floor(Date.now() / 1000), body }, config.webhookSecrets);
        const outcome = await attemptDelivery(
          { url: delivery.url, body, headers },
          {
            policy: { allowHttp: config.webhookAllowHttp, allowedHosts: config.webhookAllowedHosts },
            resolve: this.options.resolve,
            timeoutMs: config.webhookTimeoutMs,
            signal,
          },
        );
        const last = attemptNumber >= attemptsLeft;
        const final = outcome.result === "success" ? "delivered" : !outcome.retryable || last ? "dead" : null;
        const recorded = await recordAttempt(database.db, delivery.taskId, this.id, {
          statusCode: outcome.statusCode,
          error: outcome.error,
          durationMs: outcome.durationMs,
          final,
          lockMs: this.lockMs,
        });
        metrics?.webhookAttempts.inc({ result: outcome.result });
        metrics?.webhookAttemptSeconds.observe({ result: outcome.result }, outcome.durationMs / 1000);
        if (!recorded) throw new AbortError(new DeliveryEnded("the delivery was taken over by another sender"));
        if (final !== null) {
          metrics?.webhookDeliveries.inc({ outcome: final });
          if (final === "delivered") log.info({ attempt: recorded.attempt, status_code: outcome.statusCode, duration_ms: outcome.durationMs }, "webhook delivered");
          else log.warn({ attempt: recorded.attempt, status_code: outcome.statusCode, error: outcome.error }, "webhook delivery dead");
          if (final === "dead") throw new AbortError(new DeliveryEnded(outcome.error ?? "delivery failed"));
          return;
        }
        log.debug({ attempt: recorded.attempt, status_code: outcome.statusCode, error: outcome.error }, "webhook attempt failed; retrying");
        throw new RetryableAttempt(outcome, recorded.attemptRowId);
      },
      {
        retries: attemptsLeft - 1,
        factor: 2,
        // A delivery taken over mid-round (its sender died or stopped) continues the
        // round's backoff: after r attempts the next wait is base * 2^r, not base again.
        minTimeout: config.webhookBackoffMs * 2 ** delivery.roundAttempts,
        randomize: false,
        signal,
        onFailedAttempt: async ({ error, retryDelay, retriesLeft }) => {
          if (!(error instanceof RetryableAttempt) || retriesLeft === 0) return;
          const asked = Math.min(error.outcome.retryAfterMs ?? 0, config.webhookMaxRetryAfterMs);
          const wait = Math.max(retryDelay, asked);
          await scheduleRetry(database.db, delivery.taskId, this.id, error.attemptRowId, wait, this.lockMs);
          // p-retry waits retryDelay after this; a longer Retry-After is the difference.
          if (wait > retryDelay) await sleep(wait - retryDelay, signal);
        },
      },
    ).catch((error) => {
      // Dead deliveries and lost locks end here; they are recorded already.
      if (error instanceof DeliveryEnded) return;
      throw error;
    });
  }
}
