/**
 * The live-event hub of one API process: one Redis subscription (src/queue/taskEvents.ts)
 * fanned out in memory to every open SSE stream of the process.
 *
 * Each event is encoded once, and goes only to the streams that want it (indexed by task and
 * by agent, so an event costs the streams it reaches, not every stream). A stream's bytes wait
 * in a queue of its own until Bun asks for more (the response body is a pull stream, and Bun
 * pulls only when the socket has taken what it had), so a client that reads slowly lets its
 * queue grow. When more than `clientBufferBytes` queued by earlier bursts is still waiting as
 * new events arrive, the client is dropped: its queue is discarded and its connection reset.
 * (A burst is what one synchronous run queues: the messages of one socket read of the
 * subscriber, or a heartbeat; nobody can have taken any of it yet, so a burst alone never drops
 * a client.) Nothing waits for a client: a slow one never holds up the others, and none holds
 * more than its buffer plus one burst (plus what its socket holds).
 *
 * Every `heartbeatMs` a `: ping` comment goes to every stream (keeps proxies and clients from
 * timing the connection out, and finds clients that are gone). On the same beat, per-task
 * streams that heard nothing for two beats re-read their task from PostgreSQL, in one query:
 * the backstop for a message pub/sub lost (a publisher's Redis was down, the task was deleted).
 * When the subscription comes back after an interruption, every per-task stream re-reads its
 * task at once and every firehose stream gets a `resync` event (events may have been missed).
 */
import type { Logger } from "pino";
import { AppError } from "../../core/errors.ts";
import { isTerminal, type TaskStatus } from "../../core/tasks.ts";
import type { TaskEvent, TaskEventData, TaskEventListener, TaskEventSubscriber } from "../../queue/taskEvents.ts";
import type { Metrics } from "../../metrics/registry.ts";

/** What a task's row says, for a stream that re-reads it. */
export interface TaskState {
  task_id: string;
  agent_id: string;
  status: TaskStatus;
  progress_percentage: number;
  attempt: number;
  updated_at: string;
}

export interface LiveEventsOptions {
  heartbeatMs: number;
  clientBufferBytes: number;
  maxClients: number;
  /** The current rows of these tasks; a task missing from the answer was deleted. */
  loadTasks: (taskIds: string[]) => Promise<Map<string, TaskState>>;
  logger?: Logger;
  /** agentq_sse_streams and agentq_sse_clients_dropped_total. */
  metrics?: Pick<Metrics, "sseStreams" | "sseClientsDropped">;
  /** How long a new stream waits for the subscription before it is refused (503). */
  readyTimeoutMs?: number;
}

/** Which events a stream wants: one task's, or (firehose) those of some agents and statuses. */
export interface StreamFilter {
  taskId?: string;
  /** Absent: every agent. */
  agentIds?: ReadonlySet<string>;
  /** Absent: every status (a progress event's status is `running`). */
  statuses?: ReadonlySet<TaskStatus>;
}

export interface LiveEventsStats {
  /** Streams open now, and since the start. */
  open: number;
  opened: number;
  /** Clients dropped for letting more than clientBufferBytes wait. */
  dropped: number;
  /** Event frames queued for a client (one per event and stream). */
  frames: number;
  /** The most bytes that ever waited for one client. */
  maxQueuedBytes: number;
  /** Tasks re-read (quiet streams and resubscriptions). */
  rechecked: number;
}

const encoder = new TextEncoder();
export const PING_FRAME = encoder.encode(": ping\n\n");
const CONNECTED_FRAME = encoder.encode(": connected\n\n");

/** `id:`, `event:` and one `data:` line (JSON has no raw newline), then the blank line. */
export function eventFrame(event: TaskEvent): Uint8Array {
  const { id, type, task_id, agent_id, status, percent, attempt, at } = event;
  return encoder.encode(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ id, type, task_id, agent_id, status, percent, attempt, at })}\n\n`);
}

/** An event the stream made up from PostgreSQL (a re-read): no id, since Redis gave it none. */
function stateFrame(state: TaskState): Uint8Array {
  const data = {
    id: null,
    type: "status",
    task_id: state.task_id,
    agent_id: state.agent_id,
    status: state.status,
    percent: state.progress_percentage,
    attempt: state.attempt,
    at: state.updated_at,
  };
  return encoder.encode(`event: status\ndata: ${JSON.stringify(data)}\n\n`);
}

const namedFrame = (event: string, data: unknown) => encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

/** Task ids whose terminal status has gone out, remembered so nothing older follows it. */
const ENDED_REMEMBERED = 10_000;
/** Events a per-task stream keeps while its first read is in flight. */
const HELD_MAX = 256;
/** After its last frame, a closed stream's connection may sit this long without progress (a stalled client). */
const CLOSING_IDLE_SECONDS = 5;

type Last = { status: TaskStatus; attempt: number; percent: number | null };

/** Duplicates and progress that went backwards within the same run add nothing. */
function adds(last: Last | null, e: { type: string; status: TaskStatus; attempt: number; percent: number | null }): boolean {
  if (!last) return true;
  if (e.type === "progress")
    return !(last.status === "running" && e.attempt === last.attempt && e.percent !== null && last.percent !== null && e.percent <= last.percent);
  return !(e.status === last.status && e.attempt === last.attempt);
}

export class LiveEvents implements TaskEventListener {
  readonly stats: LiveEventsStats = { open: 0, opened: 0, dropped: 0, frames: 0, maxQueuedBytes: 0, rechecked: 0 };
  private readonly streams = new Set<LiveStream>();
  private readonly byTask = new Map<string, Set<LiveStream>>();
  private readonly byAgent = new Map<string, Set<LiveStream>>();
  private readonly everyAgent = new Set<LiveStream>();
  private readonly ended = new Set<string>();
  private unlisten: (() => void) | null = null;
  private timer: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  private closed = false;
  /** Bumped once per synchronous run that queues bytes (one Redis read's messages, one heartbeat). */
  private burst = 0;
  private inBurst = false;

  constructor(
    private readonly source: TaskEventSubscriber,
    readonly options: LiveEventsOptions,
  ) {}

  /**
   * A new stream, registered at once so it hears every event from now on (a per-task stream
   * holds them until `begin`). Throws 503 when the process has `maxClients` streams open or is
   * shutting down. The caller must `begin` it, or `abandon` it if it answers otherwise.
   */
  open(filter: StreamFilter, connection: { setIdleTimeout?: (seconds: number) => void } = {}): LiveStream {
    if (this.closed) throw new AppError("dependency_unavailable", "live events are shutting down on this process");
    if (this.streams.size >= this.options.maxClients)
      throw new AppError("too_many_streams", `this process has ${this.options.maxClients} live event streams open (AGENTQ_SSE_MAX_CLIENTS); retry later`);
    this.unlisten ??= this.source.listen(this);
    this.timer ??= setInterval(() => this.beat(), this.options.heartbeatMs);
    (this.timer as { unref?: () => void }).unref?.();
    const stream = new LiveStream(this, filter, connection.setIdleTimeout);
    this.streams.add(stream);
    if (filter.taskId !== undefined) indexAdd(this.byTask, filter.taskId, stream);
    else if (filter.agentIds) for (const a of filter.agentIds) indexAdd(this.byAgent, a, stream);
    else this.everyAgent.add(stream);
    this.stats.open = this.streams.size;
    this.stats.opened++;
    this.options.metrics?.sseStreams.inc();
    return stream;
  }

  /** True once the Redis subscription is live (waits up to readyTimeoutMs). */
  ready(): Promise<boolean> {
    return this.source.ready(this.options.readyTimeoutMs ?? 5000);
  }

  /** Ends every stream (their connections are reset) and the subscription's use by this hub. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const s of [...this.streams]) s.drop("shutdown");
    this.unlisten?.();
    this.unlisten = null;
  }

  /** @internal */
  remove(stream: LiveStream) {
    if (!this.streams.delete(stream)) return;
    const { taskId, agentIds } = stream.filter;
    if (taskId !== undefined) indexDelete(this.byTask, taskId, stream);
    else if (agentIds) for (const a of agentIds) indexDelete(this.byAgent, a, stream);
    else this.everyAgent.delete(stream);
    this.stats.open = this.streams.size;
    this.options.metrics?.sseStreams.dec();
  }

  /** @internal The number of the burst now being queued (a new one after every turn of the event loop). */
  currentBurst(): number {
    if (!this.inBurst) {
      this.inBurst = true;
      this.burst++;
      queueMicrotask(() => {
        this.inBurst = false;
      });
    }
    return this.burst;
  }

  /** @internal */
  queued(bytes: number) {
    this.stats.frames++;
    if (bytes > this.stats.maxQueuedBytes) this.stats.maxQueuedBytes = bytes;
  }

  /** @internal */
  droppedSlow(stream: LiveStream, bytes: number) {
    this.stats.dropped++;
    this.options.metrics?.sseClientsDropped.inc();
    this.options.logger?.info(
      { filter: describe(stream.filter), queued_bytes: bytes, limit_bytes: this.options.clientBufferBytes },
      "live event client too slow; dropped",
    );
  }

  events(batch: readonly TaskEvent[]): void {
    const touched = new Set<LiveStream>();
    for (const e of batch) {
      if (this.ended.has(e.task_id)) continue;
      const terminal = e.type === "status" && isTerminal(e.status);
      if (terminal) this.remember(e.task_id);
      let frame: Uint8Array | undefined;
      const bytes = () => (frame ??= eventFrame(e));
      const watching = this.byTask.get(e.task_id);
      if (watching) for (const s of watching) if (s.offer(e, bytes)) touched.add(s);
      const forAgent = this.byAgent.get(e.agent_id);
      if (forAgent) for (const s of forAgent) if (s.offer(e, bytes)) touched.add(s);
      for (const s of this.everyAgent) if (s.offer(e, bytes)) touched.add(s);
    }
    for (const s of touched) s.flush();
  }

  resubscribed(): void {
    this.options.logger?.info({ streams: this.streams.size }, "live task events resubscribed; streams re-read their tasks");
    const frame = namedFrame("resync", { reason: "the event subscription was interrupted; events may have been missed" });
    const perTask: LiveStream[] = [];
    for (const s of this.streams) {
      if (s.filter.taskId !== undefined) perTask.push(s);
      else if (s.push(frame)) s.flush();
    }
    void this.recheck(perTask);
  }

  private remember(taskId: string) {
    this.ended.add(taskId);
    if (this.ended.size > ENDED_REMEMBERED) this.ended.delete(this.ended.values().next().value!);
  }

  private beat() {
    const now = performance.now();
    const quiet: LiveStream[] = [];
    for (const s of this.streams) {
      if (s.push(PING_FRAME)) s.flush();
      if (s.filter.taskId !== undefined && s.isLive && now - s.lastHeard >= 2 * this.options.heartbeatMs) quiet.push(s);
    }
    if (quiet.length > 0 && !this.checking) void this.recheck(quiet);
  }

  /** Re-reads the tasks of these per-task streams (one query) and sends what changed. */
  private async recheck(streams: LiveStream[]) {
    const live = streams.filter((s) => s.isLive);
    if (live.length === 0) return;
    this.checking = true;
    try {
      const ids = [...new Set(live.map((s) => s.filter.taskId!))];
      const states = await this.options.loadTasks(ids);
      this.stats.rechecked += ids.length;
      for (const s of live) s.reconcile(states.get(s.filter.taskId!) ?? null);
    } catch (error) {
      this.options.logger?.warn({ err: error, tasks: live.length }, "could not re-read the tasks of live event streams; will retry");
    } finally {
      this.checking = false;
    }
  }
}

/** One SSE response: its body, and the bytes waiting for the client. */
export class LiveStream {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private chunks: Uint8Array[] = [];
  private bytes = 0;
  /** Bytes that were already waiting when the current burst began, and that burst's number. */
  private carried = 0;
  private burst = 0;
  private wake: (() => void) | null = null;
  /** held: a per-task stream before its first read; live; ending: closes after its last bytes; done. */
  private state: "held" | "live" | "ending" | "done";
  private held: TaskEvent[] = [];
  private last: Last | null = null;
  /** When it last got an event about its task (performance.now()). */
  lastHeard = performance.now();

  constructor(
    private readonly hub: LiveEvents,
    readonly filter: StreamFilter,
    private readonly setIdleTimeout?: (seconds: number) => void,
  ) {
    this.state = filter.taskId !== undefined ? "held" : "live";
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        pull: () => this.pull(),
        // The client went away (or the server is stopping).
        cancel: () => this.finish(),
      },
      { highWaterMark: 0 },
    );
  }

  get isLive(): boolean {
    return this.state === "live";
  }

  /**
   * Starts a firehose stream (a `: connected` comment), or a per-task stream with its task
   * (`first`: the `task` event) and then what it heard meanwhile that the task does not show yet.
   */
  begin(first?: { frame: Uint8Array; state: TaskState }): void {
    if (this.state === "done") return;
    this.setIdleTimeout?.(0);
    if (!first) {
      this.push(CONNECTED_FRAME);
      this.flush();
      return;
    }
    this.state = "live";
    this.last = { status: first.state.status, attempt: first.state.attempt, percent: first.state.progress_percentage };
    this.push(first.frame);
    if (isTerminal(first.state.status)) this.end();
    else for (const e of this.held.splice(0)) this.offer(e, () => eventFrame(e));
    this.held = [];
    this.flush();
  }

  /** Never returned to a client (its request got another answer): forget it. */
  abandon(): void {
    this.state = "done";
    this.held = [];
    this.hub.remove(this);
  }

  /** @internal Queues the event if this stream wants it; true when it did. */
  offer(e: TaskEvent, frame: () => Uint8Array): boolean {
    const { taskId, statuses } = this.filter;
    if (taskId !== undefined) {
      if (this.state === "held") {
        if (this.held.length >= HELD_MAX) this.held.shift();
        this.held.push(e);
        return false;
      }
      if (this.state !== "live") return false;
      this.lastHeard = performance.now();
      if (!adds(this.last, e)) return false;
      this.last = { status: e.status, attempt: e.attempt, percent: e.percent };
      const queued = this.push(frame());
      if (queued && e.type === "status" && isTerminal(e.status)) this.end();
      return queued;
    }
    if (statuses && !statuses.has(e.status)) return false;
    return this.push(frame());
  }

  /** @internal What a re-read found: sent as a status event when it is news; a deleted task ends the stream. */
  reconcile(state: TaskState | null): void {
    if (this.state !== "live") return;
    this.lastHeard = performance.now();
    if (!state) {
      this.push(namedFrame("deleted", { task_id: this.filter.taskId }));
      this.end();
    } else if (adds(this.last, { type: "status", status: state.status, attempt: state.attempt, percent: state.progress_percentage })) {
      this.last = { status: state.status, attempt: state.attempt, percent: state.progress_percentage };
      if (this.push(stateFrame(state)) && isTerminal(state.status)) this.end();
    }
    this.flush();
  }

  /**
   * @internal Queues bytes for the client; false when the stream is over. A client is slow when
   * more than the buffer's worth, queued by earlier bursts, is still waiting as a new one
   * arrives: it is dropped instead. (Within one burst, the events of one socket read of the
   * subscriber, a client cannot have taken anything yet, so a burst alone never drops anyone; a
   * client holds at most the buffer plus one burst.)
   */
  push(bytes: Uint8Array): boolean {
    if (this.state === "done" || this.state === "ending" || this.state === "held") return false;
    const burst = this.hub.currentBurst();
    if (burst !== this.burst) {
      this.burst = burst;
      this.carried = this.bytes;
    }
    if (this.carried > this.hub.options.clientBufferBytes) {
      this.hub.droppedSlow(this, this.bytes + bytes.length);
      this.drop("slow");
      return false;
    }
    this.chunks.push(bytes);
    this.bytes += bytes.length;
    this.hub.queued(this.bytes);
    return true;
  }

  /**
   * @internal Hands what is queued to a waiting pull (after the events of a batch are all
   * queued). A pull is only woken with something to deliver: Bun does not pull again after a
   * pull that delivered nothing.
   */
  flush(): void {
    const wake = this.wake;
    if (!wake || (this.chunks.length === 0 && this.state === "live")) return;
    this.wake = null;
    wake();
  }

  /** @internal Resets the connection at once; the queue is discarded. */
  drop(_why: "slow" | "shutdown"): void {
    if (this.state === "done") return;
    const wasOpen = this.state !== "ending";
    this.finish();
    // error() without a reason: Bun resets the connection and logs nothing. A stream already
    // closed (ending) cannot be errored; its idle timeout ends a stalled connection.
    if (wasOpen)
      try {
        this.controller.error();
      } catch {
        // already closed by the client
      }
    this.flush();
  }

  /** Sends what is queued, then closes (a per-task stream after its terminal status). */
  private end(): void {
    if (this.state === "done" || this.state === "ending") return;
    this.state = "ending";
    this.hub.remove(this);
    // A client that stops reading now would hold the connection: let it go after a while.
    this.setIdleTimeout?.(CLOSING_IDLE_SECONDS);
    this.flush();
  }

  private finish() {
    this.state = "done";
    this.chunks = [];
    this.bytes = 0;
    this.held = [];
    this.hub.remove(this);
  }

  private pull(): Promise<void> | void {
    if (this.deliver()) return;
    return new Promise<void>((resolve) => {
      this.wake = resolve;
    }).then(() => this.pull());
  }

  /** Enqueues everything waiting as one chunk; true when it did something (or nothing more will come). */
  private deliver(): boolean {
    if (this.state === "done") return true;
    if (this.chunks.length === 0) {
      if (this.state !== "ending") return false;
      this.state = "done";
      this.controller.close();
      return true;
    }
    const chunk = this.chunks.length === 1 ? this.chunks[0]! : concat(this.chunks, this.bytes);
    this.chunks = [];
    this.bytes = 0;
    this.carried = 0;
    this.controller.enqueue(chunk);
    if (this.state === "ending") {
      this.state = "done";
      this.controller.close();
    }
    return true;
  }
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

function indexAdd(index: Map<string, Set<LiveStream>>, key: string, stream: LiveStream) {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(stream);
}

function indexDelete(index: Map<string, Set<LiveStream>>, key: string, stream: LiveStream) {
  const set = index.get(key);
  if (!set) return;
  set.delete(stream);
  if (set.size === 0) index.delete(key);
}

function describe(filter: StreamFilter) {
  return {
    task_id: filter.taskId,
    agents: filter.agentIds?.size,
    statuses: filter.statuses ? [...filter.statuses] : undefined,
  };
}

export type { TaskEventData };
