/**
 * Live task events over Redis pub/sub, for `GET /api/v1/tasks/{id}/events` and `GET /api/v1/events`.
 *
 * Publishers are whoever changed the task: a supervisor (running, progress, and the endings its
 * actors and it wrote), a reconciler (a lapsed lease: back to pending, or failed), the API (a new
 * task is pending, a DELETE wrote cancelled). None of them waits on it: `publish` only queues the
 * event, and one batcher per process sends what is queued as ONE message per batch, the batch
 * being whatever arrived while the previous message was in flight (group commit, as
 * src/tasks/groupCommit.ts: an idle publisher sends on the next microtask; no timer). Within a
 * batch a task's newer progress replaces its older one. A batch is one EVALSHA: INCRBY on
 * `keys.taskEventSeq` gives it a block of ids and PUBLISH sends
 *
 *     <id of the first event> <JSON array of events>
 *
 * on `keys.taskEventsChannel`. Redis runs scripts one at a time and delivers a connection's
 * messages in order, so every subscriber sees ids increase (until Redis loses the counter,
 * when they start again from 1).
 *
 * Subscribers: one connection per API process (TaskEventSubscriber), which hands each batch to
 * its listeners in memory (src/api/events/hub.ts fans them out to SSE clients).
 *
 * Pub/sub is fire-and-forget: a message published while a subscriber is disconnected is lost to
 * it. Listeners are told when the subscription is re-established, so they can re-read what they
 * watch from PostgreSQL, which stays the truth. A publisher whose Redis is down loses events (it
 * keeps at most `maxPending` of them meanwhile); it never blocks or fails its caller.
 */
import type { RedisClient } from "./redisClient.ts";
import { duplicateRedis } from "./connection.ts";
import type { Logger } from "pino";
import { randomBytes } from "node:crypto";
import { TASK_ID_PATTERN, TASK_STATUSES, type TaskStatus } from "../core/tasks.ts";
import type { QueueKeys } from "./keys.ts";

export const TASK_EVENT_TYPES = ["progress", "status"] as const;
export type TaskEventType = (typeof TASK_EVENT_TYPES)[number];

/** An event as its publisher makes it. */
export interface TaskEventData {
  /** `progress`: the running task reported progress; `status`: the task's status changed to `status`. */
  type: TaskEventType;
  task_id: string;
  agent_id: string;
  /** The status after the event (`running` for progress). */
  status: TaskStatus;
  /** 0..100; null when the publisher does not know it (see the task). */
  percent: number | null;
  /** Claims so far, as PostgreSQL counts them (0 for a task never claimed). */
  attempt: number;
  /** When the publisher saw it (its clock), ISO 8601. */
  at: string;
}

/** An event as subscribers get it: with the id Redis gave it. */
export interface TaskEvent extends TaskEventData {
  id: number;
}

const COMMAND = "agentqPublishTaskEvents";

/** KEYS[1] the id counter; ARGV[1] events in the batch, ARGV[2] the channel, ARGV[3] the JSON array. */
const LUA = `
local n = tonumber(ARGV[1])
local last = redis.call('INCRBY', KEYS[1], n)
redis.call('PUBLISH', ARGV[2], string.format('%d', last - n + 1) .. ' ' .. ARGV[3])
return last
`;

type PublishCommand = (seqKey: string, count: number, channel: string, json: string) => Promise<number>;

const defined = new WeakSet<RedisClient>();

function publishCommand(redis: RedisClient): PublishCommand {
  if (!defined.has(redis)) {
    redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: LUA });
    defined.add(redis);
  }
  const command = (redis as unknown as Record<string, PublishCommand>)[COMMAND]!;
  return (...args) => command.apply(redis, args);
}

export interface PublisherStats {
  /** Events handed to publish(). */
  accepted: number;
  /** Progress events folded into a newer one of the same task before they went out. */
  coalesced: number;
  /** Events published, and the messages (script calls) that carried them. */
  published: number;
  messages: number;
  /** Events lost: Redis refused or was unreachable, or too many were waiting. */
  failed: number;
  dropped: number;
}

export interface PublisherOptions {
  logger?: Logger;
  /** Events waiting while a message is in flight, at most; more progress is dropped (status events get twice as much room). */
  maxPending?: number;
  /** Events per message, at most (a larger batch goes out as several messages, together). */
  maxBatch?: number;
}

/** Logs a failure at most this often. */
const WARN_EVERY_MS = 10_000;

export class TaskEventPublisher {
  readonly stats: PublisherStats = { accepted: 0, coalesced: 0, published: 0, messages: 0, failed: 0, dropped: 0 };
  private pending: TaskEventData[] = [];
  /** Index in `pending` of each task's progress event that a newer one may still replace. */
  private progressAt = new Map<string, number>();
  private writing = false;
  private idle: (() => void)[] = [];
  private closed = false;
  private lastWarn = 0;
  private readonly send: PublishCommand;
  private readonly maxPending: number;
  private readonly maxBatch: number;

  constructor(
    redis: RedisClient,
    private readonly keys: QueueKeys,
    private readonly options: PublisherOptions = {},
  ) {
    this.send = publishCommand(redis);
    this.maxPending = options.maxPending ?? 10_000;
    this.maxBatch = options.maxBatch ?? 500;
  }

  /** Queues an event for the next message; never throws, never waits. */
  publish(event: TaskEventData): void {
    if (this.closed) return;
    this.stats.accepted++;
    if (event.type === "progress") {
      const at = this.progressAt.get(event.task_id);
      if (at !== undefined) {
        const queued = this.pending[at]!;
        queued.percent = event.percent;
        queued.at = event.at;
        queued.attempt = event.attempt;
        this.stats.coalesced++;
        return;
      }
      if (this.pending.length >= this.maxPending) {
        this.stats.dropped++;
        return;
      }
      this.progressAt.set(event.task_id, this.pending.length);
    } else {
      // A status change goes after the progress before it: that progress may no longer be replaced.
      this.progressAt.delete(event.task_id);
      if (this.pending.length >= 2 * this.maxPending) {
        this.stats.dropped++;
        return;
      }
    }
    this.pending.push({ ...event });
    if (this.writing) return;
    this.writing = true;
    queueMicrotask(() => void this.drain());
  }

  /** Resolves once everything queued so far has been sent (or has failed). */
  flushed(): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Sends what is queued (waiting at most `timeoutMs`), then accepts nothing more. */
  async close(timeoutMs = 1000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.flushed(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    this.closed = true;
    this.pending = [];
    this.progressAt.clear();
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      this.progressAt.clear();
      const messages: Promise<void>[] = [];
      for (let i = 0; i < batch.length; i += this.maxBatch) messages.push(this.sendBatch(batch.slice(i, i + this.maxBatch)));
      await Promise.all(messages);
    }
    this.writing = false;
    for (const resolve of this.idle.splice(0)) resolve();
  }

  private async sendBatch(events: TaskEventData[]): Promise<void> {
    try {
      await this.send(this.keys.taskEventSeq, events.length, this.keys.taskEventsChannel, JSON.stringify(events));
      this.stats.published += events.length;
      this.stats.messages++;
    } catch (error) {
      this.stats.failed += events.length;
      const now = Date.now();
      if (now - this.lastWarn >= WARN_EVERY_MS) {
        this.lastWarn = now;
        this.options.logger?.warn(
          { err: error, lost: events.length, lost_total: this.stats.failed },
          "could not publish live task events; SSE clients re-read their tasks when they reconnect",
        );
      }
    }
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TASK_ID = new RegExp(TASK_ID_PATTERN);

/** The event, if `value` is one (a message is checked before anything is sent on). */
function asEventData(value: unknown): TaskEventData | null {
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  const percent = v.percent;
  const ok =
    (TASK_EVENT_TYPES as readonly unknown[]).includes(v.type) &&
    typeof v.task_id === "string" &&
    TASK_ID.test(v.task_id) &&
    typeof v.agent_id === "string" &&
    UUID.test(v.agent_id) &&
    (TASK_STATUSES as readonly unknown[]).includes(v.status) &&
    (percent === null || (Number.isInteger(percent) && (percent as number) >= 0 && (percent as number) <= 100)) &&
    Number.isInteger(v.attempt) &&
    (v.attempt as number) >= 0 &&
    typeof v.at === "string" &&
    v.at.length <= 40;
  if (!ok) return null;
  return {
    type: v.type as TaskEventType,
    task_id: v.task_id as string,
    agent_id: v.agent_id as string,
    status: v.status as TaskStatus,
    percent: percent as number | null,
    attempt: v.attempt as number,
    at: v.at as string,
  };
}

/**
 * Parses one message: its events with their ids, and how many of its elements were not events
 * (dropped). Null when the message itself is malformed.
 */
export function parseTaskEvents(message: string): { events: TaskEvent[]; invalid: number } | null {
  const space = message.indexOf(" ");
  if (space <= 0) return null;
  const first = Number(message.slice(0, space));
  if (!Number.isSafeInteger(first) || first < 1) return null;
  let items: unknown;
  try {
    items = JSON.parse(message.slice(space + 1));
  } catch {
    return null;
  }
  if (!Array.isArray(items)) return null;
  const events: TaskEvent[] = [];
  let invalid = 0;
  items.forEach((item, i) => {
    const data = asEventData(item);
    if (data) events.push({ id: first + i, ...data });
    else invalid++;
  });
  return { events, invalid };
}

export interface TaskEventListener {
  /** A batch of events, in id order. */
  events(batch: readonly TaskEvent[]): void;
  /** The subscription came back after an interruption: events published meanwhile were missed. */
  resubscribed(): void;
}

/**
 * The one subscription of a process: a connection of its own (a duplicate of `redis`: a
 * subscribed connection runs no other commands), opened by the first listener, resubscribed by
 * hand on every reconnect so listeners hear of it only once Redis confirmed it.
 */
export class TaskEventSubscriber {
  private readonly listeners = new Set<TaskEventListener>();
  private subscriber: RedisClient | null = null;
  private subscribed = false;
  private everSubscribed = false;
  private closed = false;
  private waiting: (() => void)[] = [];
  private lastWarn = 0;
  /** CLIENT SETNAME of the subscriber connection (diagnostics, and tests that cut it). */
  readonly connectionName = `agentq-task-events-${randomBytes(4).toString("hex")}`;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
    private readonly logger?: Logger,
  ) {}

  /** Registers a listener and starts the subscription (once); returns the function that removes it. */
  listen(listener: TaskEventListener): () => void {
    if (this.closed) throw new Error("TaskEventSubscriber is closed");
    this.listeners.add(listener);
    this.subscriber ??= this.subscribe();
    return () => void this.listeners.delete(listener);
  }

  /** True while Redis has confirmed the subscription. */
  get live(): boolean {
    return this.subscribed;
  }

  /** Resolves true once the subscription is live (at once if it is), false after `timeoutMs` or on close. */
  ready(timeoutMs: number): Promise<boolean> {
    if (this.subscribed) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(this.subscribed);
      };
      this.waiting.push(done);
    });
  }

  close(): void {
    this.closed = true;
    this.subscribed = false;
    this.listeners.clear();
    this.subscriber?.disconnect();
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  private subscribe(): RedisClient {
    const channel = this.keys.taskEventsChannel;
    const subscriber = duplicateRedis(this.redis, {
      autoResubscribe: false,
      enableAutoPipelining: false,
      maxRetriesPerRequest: null,
      connectionName: this.connectionName,
    });
    subscriber.on("error", (error) => this.warn({ err: error }, "redis error on the live task event subscriber"));
    subscriber.on("close", () => {
      if (this.closed || !this.subscribed) return;
      this.subscribed = false;
      this.logger?.warn("live task events are not received while Redis is unreachable; streams re-read their tasks when it is back");
    });
    subscriber.on("ready", () => {
      subscriber.subscribe(channel).then(
        () => {
          if (this.closed) return;
          this.subscribed = true;
          const again = this.everSubscribed;
          this.everSubscribed = true;
          if (again) for (const l of this.listeners) l.resubscribed();
          for (const resolve of this.waiting.splice(0)) resolve();
        },
        (error) => this.warn({ err: error }, "could not subscribe to live task events"),
      );
    });
    subscriber.on("message", (from: string, message: string) => {
      if (from !== channel) return;
      const parsed = parseTaskEvents(message);
      if (!parsed || parsed.invalid > 0) this.warn({ message: message.slice(0, 200) }, "malformed live task event message; its bad events are dropped");
      if (!parsed || parsed.events.length === 0) return;
      for (const l of this.listeners) l.events(parsed.events);
    });
    return subscriber;
  }

  private warn(fields: Record<string, unknown>, msg: string) {
    const now = Date.now();
    if (now - this.lastWarn < WARN_EVERY_MS) return;
    this.lastWarn = now;
    this.logger?.warn(fields, msg);
  }
}
