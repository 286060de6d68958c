/**
 * The webhook sender: a long-lived service of the supervisor process (never a
 * worker actor: a worker must not wait on a client's server).
 *
 *   outbox row (trigger, same transaction as the task's end)
 *     -> NOTIFY wakes a sender (a periodic sweep covers lost notifications, retries
 *        another sender scheduled, and deliveries whose sender died: their lock lapses)
 *     -> claim (locked for ONE attempt + margin)
 *     -> attempt, then record it in one statement: delivered, dead (with its reason), or
 *        pending again with next_attempt_at = now + the schedule's next wait (jittered,
 *        never before a Retry-After), unlocked.
 *
 * A retry is never slept in memory: it waits in the outbox, so hours-long schedules survive
 * restarts and any sender takes the next attempt when it is due. The sender that recorded a
 * retry keeps its due time as a hint and wakes for it (the sweep is the fallback).
 *
 * Delivery is at least once: a sender that dies after the receiver answered but
 * before the attempt was recorded is repeated by another sender with the same
 * `webhook-id`, which receivers use to ignore duplicates.
 */
import type { Logger } from "pino";
import { randomBytes } from "node:crypto";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import { toIsoOrNull } from "../db/values.ts";
import {
  claimDueDeliveries,
  endGoneDelivery,
  recordAttempt,
  releaseDeliveries,
  WEBHOOK_CHANNEL,
  type ClaimedDelivery,
  type DeadReason,
} from "../db/webhooks.ts";
import type { Metrics } from "../metrics/registry.ts";
import { attemptDelivery, type AttemptOutcome } from "./deliver.ts";
import { retryDelayMs, type RetryPolicy } from "./schedule.ts";
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
  /** Source of the jitter, in [0, 1) (default Math.random; tests pass a fixed one). */
  random?: () => number;
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

/** Retry due times this sender keeps as wake-up hints, at most (the sweep finds the rest). */
const MAX_WAKE_HINTS = 10_000;

/** How a failed attempt ends the delivery, when it does. */
export function deadReasonOf(outcome: AttemptOutcome): DeadReason | null {
  if (outcome.statusCode === 410) return "gone";
  if (outcome.result === "unsafe_url") return "unsafe_url";
  if (!outcome.retryable) return "rejected";
  return null;
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
  private readonly policy: RetryPolicy;
  /** Due times (epoch ms, ascending) of retries this sender recorded: it wakes for them. */
  private readonly wakeHints: number[] = [];

  constructor(private readonly options: WebhookSenderOptions) {
    this.id = options.id ?? `webhooks-${randomBytes(4).toString("hex")}`;
    this.lockMs = options.config.webhookTimeoutMs + Math.min(LOCK_MARGIN_MS, options.config.webhookTimeoutMs);
    this.policy = {
      schedule: options.config.webhookSchedule,
      jitter: options.config.webhookJitter,
      maxRetryAfterMs: options.config.webhookMaxRetryAfterMs,
    };
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

  /** Remembers a retry's due time (a local clock reading: no skew with PostgreSQL's). */
  private hint(at: number) {
    const hints = this.wakeHints;
    let lo = 0;
    let hi = hints.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hints[mid]! <= at) lo = mid + 1;
      else hi = mid;
    }
    hints.splice(lo, 0, at);
    if (hints.length > MAX_WAKE_HINTS) hints.pop();
    if (lo === 0) this.poke(); // the loop may be sleeping past it
  }

  /** How long to sleep: until the next hinted retry, at most a sweep period. */
  private nextWaitMs(sweepMs: number): number {
    const now = Date.now();
    let due = 0;
    while (due < this.wakeHints.length && this.wakeHints[due]! <= now) due++;
    this.wakeHints.splice(0, due);
    const next = this.wakeHints[0];
    return next === undefined ? sweepMs : Math.min(sweepMs, next - now);
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
      const waitMs = this.nextWaitMs(sweepMs);
      await new Promise<void>((resolve) => {
        // +1: PostgreSQL's now() when the retry was recorded came before our clock reading.
        const timer = setTimeout(resolve, waitMs + 1);
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

  /** One attempt of a claimed delivery, recorded with what follows it. */
  private async deliver(delivery: ClaimedDelivery): Promise<void> {
    const { config, database, logger, metrics } = this.options;
    const log = logger.child({ task_id: delivery.taskId, webhook_id: delivery.webhookId });

    if (delivery.gone && (await endGoneDelivery(database.db, delivery.taskId, this.id))) {
      metrics?.webhookDeliveries.inc({ outcome: "dead" });
      log.warn({ url: delivery.url }, "webhook delivery dead: its URL answered 410 Gone before; not attempted");
      return;
    }

    const body = serializePayload(delivery.payload);
    const headers = signWebhook({ id: delivery.webhookId, timestampSeconds: Math.floor(Date.now() / 1000), body }, config.webhookSecrets);
    const outcome = await attemptDelivery(
      { url: delivery.url, body, headers },
      {
        policy: { allowHttp: config.webhookAllowHttp, allowedHosts: config.webhookAllowedHosts },
        resolve: this.options.resolve,
        timeoutMs: config.webhookTimeoutMs,
        signal: this.stopping.signal,
      },
    );
    const attemptsInRound = delivery.roundAttempts + 1;
    let final: "delivered" | "dead" | null = null;
    let deadReason: DeadReason | null = null;
    let nextDelayMs: number | null = null;
    if (outcome.result === "success") final = "delivered";
    else {
      deadReason = deadReasonOf(outcome);
      if (deadReason === null) {
        nextDelayMs = retryDelayMs(this.policy, attemptsInRound, outcome.retryAfterMs, this.options.random);
        if (nextDelayMs === null) deadReason = "exhausted";
      }
      if (deadReason !== null) final = "dead";
    }

    const recorded = await recordAttempt(database.db, delivery.taskId, this.id, {
      statusCode: outcome.statusCode,
      error: outcome.error,
      durationMs: outcome.durationMs,
      final,
      deadReason,
      nextDelayMs,
      markGone: deadReason === "gone",
    });
    const recordedAt = Date.now();
    metrics?.webhookAttempts.inc({ result: outcome.result });
    metrics?.webhookAttemptSeconds.observe({ result: outcome.result }, outcome.durationMs / 1000);
    if (!recorded) {
      log.warn({ status_code: outcome.statusCode }, "webhook attempt not recorded: the delivery was taken over by another sender");
      return;
    }
    if (final === "delivered") {
      metrics?.webhookDeliveries.inc({ outcome: "delivered" });
      log.info({ attempt: recorded.attempt, status_code: outcome.statusCode, duration_ms: outcome.durationMs }, "webhook delivered");
    } else if (final === "dead") {
      metrics?.webhookDeliveries.inc({ outcome: "dead" });
      log.warn({ attempt: recorded.attempt, status_code: outcome.statusCode, error: outcome.error, dead_reason: deadReason }, "webhook delivery dead");
    } else {
      this.hint(recordedAt + nextDelayMs!);
      log.debug(
        { attempt: recorded.attempt, status_code: outcome.statusCode, error: outcome.error, next_attempt_at: recorded.nextAttemptAt },
        "webhook attempt failed; retry scheduled",
      );
    }
  }
}
