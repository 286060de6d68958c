/**
 * Live events (SSE) end to end: the app served on a real socket (as `bun run api` serves it),
 * a real supervisor of worker threads running the scripted fixture, events carried by Redis
 * pub/sub. Streams are read with fetch (test/helpers/sse.ts); the stalled client is a raw TCP
 * socket that stops reading. Nothing sleeps blindly: every wait is on a message, an event or a
 * row.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import Redis from "ioredis";
import { sql } from "drizzle-orm";
import pino from "pino";
import { createTestContext, TEST_API_KEY, TEST_REDIS_URL, type TestContext } from "../helpers/app.ts";
import { eventually, spawnSupervisor, startTestEngine, waitForStatus, type TestEngine } from "../helpers/engine.ts";
import { SseClient, type SseMessage } from "../helpers/sse.ts";
import { freePort } from "../helpers/metrics.ts";
import { taskInput, uuid } from "../helpers/fixtures.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { createCorpus, enqueue, type Corpus } from "../e2e/support.ts";
import { createApp, listenOptions, type App } from "../../src/api/app.ts";
import { LiveEvents } from "../../src/api/events/hub.ts";
import { createKeyVerifier } from "../../src/auth/apiKeys.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { watchedTasks } from "../../src/db/tasks/watch.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { parseTaskEvents, TaskEventPublisher, TaskEventSubscriber, type TaskEventData } from "../../src/queue/taskEvents.ts";
import { newTaskId } from "../../src/core/tasks.ts";

const HEARTBEAT_MS = 250;
let ctx: TestContext;
let corpus: Corpus;
let engine: TestEngine | null = null;
let base: string;

const listen = (app: App) => {
  app.listen(listenOptions({ host: "127.0.0.1", port: 0 }));
  return `http://127.0.0.1:${app.server!.port}/api/v1`;
};

beforeAll(async () => {
  ctx = await createTestContext({ sseHeartbeatMs: HEARTBEAT_MS });
  corpus = await createCorpus(ctx);
  base = listen(ctx.app);
  engine = await startTestEngine(ctx, { workers: 1, concurrency: 4, workerUrl: FIXTURE_WORKERS.scripted });
});
afterAll(async () => {
  await engine?.stop();
  await ctx.app.stop(true);
  await ctx.close();
});

const ids = (messages: SseMessage[]) => messages.map((m) => Number(m.id));
const increasing = (xs: number[]) => xs.every((x, i) => i === 0 || x > xs[i - 1]!);
const isTerminalStatus = (m: SseMessage) => m.event === "status" && ["completed", "failed", "cancelled", "timeout"].includes(JSON.parse(m.data!).status);

describe("GET /tasks/{id}/events", () => {
  test("the task first, then status and progress events with increasing ids; the terminal status closes the stream", async () => {
    // Four slow tasks fill the engine's four slots, so the watched task is still pending when the stream opens.
    const busy = await corpus.agent({ mode: "slow", ms: 1500 });
    const blockers = [];
    for (let i = 0; i < 4; i++) blockers.push(await enqueue(ctx, busy, { force: true }));
    await eventually(async () => (engine!.supervisor.runningTasks().length === 4 ? true : undefined), 10_000, "four running tasks");
    const agent = await corpus.agent({ mode: "slow", ms: 500 });
    const taskId = await enqueue(ctx, agent);

    const sse = await SseClient.open(`${base}/tasks/${taskId}/events`);
    expect(sse.status).toBe(200);
    expect(sse.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(sse.headers.get("cache-control")).toBe("no-store");
    await sse.ends(20_000);
    expect(sse.error).toBeNull();

    const events = sse.events();
    expect(events[0]!.event).toBe("task");
    expect(events[0]!.id).toBeUndefined();
    const first = JSON.parse(events[0]!.data!);
    expect(first).toMatchObject({ task_id: taskId, agent_id: agent, status: "pending" });
    expect(first.queue_position).toBeGreaterThanOrEqual(1);

    const live = events.slice(1);
    expect(live.length).toBeGreaterThan(3);
    expect(live.every((m) => m.id !== undefined && (m.event === "progress" || m.event === "status"))).toBe(true);
    expect(increasing(ids(live))).toBe(true);
    for (const m of live) expect(JSON.parse(m.data!).id).toBe(Number(m.id));

    const statuses = live.filter((m) => m.event === "status").map((m) => JSON.parse(m.data!));
    expect(statuses.map((s) => s.status)).toEqual(["running", "completed"]);
    expect(statuses[0]).toMatchObject({ type: "status", task_id: taskId, agent_id: agent, status: "running", percent: 0, attempt: 1 });
    expect(statuses[1]).toMatchObject({ status: "completed", percent: 100, attempt: 1 });
    expect(isTerminalStatus(live[live.length - 1]!)).toBe(true);

    // Progress between them, rising; each percent one the actor reported to the supervisor.
    const progress = sse.data("progress");
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(increasing(progress.map((p) => p.percent))).toBe(true);
    const reported = new Set(engine!.events.flatMap((e) => (e.type === "task_progress" && e.taskId === taskId ? [Math.round(e.percent)] : [])));
    for (const p of progress) {
      expect(p).toMatchObject({ type: "progress", task_id: taskId, agent_id: agent, status: "running", attempt: 1 });
      expect(reported.has(p.percent)).toBe(true);
    }
    expect(Number.isNaN(Date.parse(progress[0].at))).toBe(false);
    expect(await waitForStatus(ctx, taskId, ["completed"])).toBe("completed");
    for (const b of blockers) await waitForStatus(ctx, b, ["completed"]);
  }, 30_000);

  test("a task that has ended is sent and the stream closes at once", async () => {
    const agent = await corpus.agent();
    const taskId = await enqueue(ctx, agent);
    await waitForStatus(ctx, taskId, ["completed"]);
    const sse = await SseClient.open(`${base}/tasks/${taskId}/events`);
    await sse.ends(5000);
    expect(sse.events().map((m) => m.event)).toEqual(["task"]);
    expect(sse.data("task")[0]).toMatchObject({ task_id: taskId, status: "completed", progress_percentage: 100 });
  });

  test("a cancel of the running task ends its stream with status cancelled, and nothing after it", async () => {
    const agent = await corpus.agent({ mode: "slow", ms: 20_000 });
    const taskId = await enqueue(ctx, agent);
    const sse = await SseClient.open(`${base}/tasks/${taskId}/events`);
    await sse.next((m) => m.event === "progress", 10_000, "a progress event");
    expect((await ctx.request("DELETE", `tasks/${taskId}`)).status).toBe(204);
    await sse.ends(10_000);
    const last = sse.events().at(-1)!;
    expect(last.event).toBe("status");
    expect(JSON.parse(last.data!)).toMatchObject({ task_id: taskId, status: "cancelled", attempt: 1 });
    expect(sse.events().filter(isTerminalStatus)).toHaveLength(1);
    // The supervisor's own report of the stop (published too) changed nothing for the stream.
    await engine!.waitForEvent((e) => e.type === "task_finished" && e.taskId === taskId);
  }, 20_000);

  test("unknown tasks are 404, malformed ids 400, and a missing key 401, in the error shape", async () => {
    const unknown = await SseClient.open(`${base}/tasks/${newTaskId()}/events`);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.text).error.code).toBe("not_found");
    const malformed = await SseClient.open(`${base}/tasks/nope/events`);
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.text).error.code).toBe("validation_error");
    const anonymous = await SseClient.open(`${base}/tasks/${newTaskId()}/events`, { anonymous: true });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.text).error.code).toBe("unauthorized");
  });
});

describe("GET /events (firehose)", () => {
  test("filters by agent and by status", async () => {
    const a = await corpus.agent({ mode: "slow", ms: 300 });
    const b = await corpus.agent({ mode: "slow", ms: 300 });
    const byAgent = await SseClient.open(`${base}/events?agent_id=${a}`);
    const completed = await SseClient.open(`${base}/events?status=completed`);
    const runningOfBoth = await SseClient.open(`${base}/events?agent_id=${a},${b}&status=running`);
    const everything = await SseClient.open(`${base}/events`);
    const streams = [byAgent, completed, runningOfBoth, everything];
    // Each says it is subscribed before anything else.
    for (const s of streams) {
      expect(s.status).toBe(200);
      const first = await s.next(() => true, 5000, "the first message");
      expect(first).toMatchObject({ event: "comment", comment: "connected" });
    }
    const ta = await enqueue(ctx, a);
    const tb = await enqueue(ctx, b);
    const mine = (m: SseMessage) => m.event !== "comment" && [ta, tb].includes(JSON.parse(m.data!).task_id);
    const doneOf = (s: SseClient, taskId: string) => s.next((m) => m.event === "status" && JSON.parse(m.data!).task_id === taskId && JSON.parse(m.data!).status === "completed");
    await Promise.all([doneOf(everything, ta), doneOf(everything, tb), doneOf(completed, ta), doneOf(completed, tb), doneOf(byAgent, ta)]);
    for (const s of streams) s.close();

    const of = (s: SseClient) => s.events().filter(mine).map((m) => ({ event: m.event, ...JSON.parse(m.data!) }));
    // One agent: every event of its task, from the API's pending to the supervisor's completed.
    const aEvents = of(byAgent);
    expect(aEvents.every((e) => e.agent_id === a && e.task_id === ta)).toBe(true);
    expect(aEvents.filter((e) => e.event === "status").map((e) => e.status)).toEqual(["pending", "running", "completed"]);
    expect(aEvents.filter((e) => e.event === "progress").length).toBeGreaterThanOrEqual(3);
    expect(increasing(ids(byAgent.events().filter(mine)))).toBe(true);
    // One status, every agent.
    const done = of(completed);
    expect(done.map((e) => e.task_id).sort()).toEqual([ta, tb].sort());
    expect(done.every((e) => e.event === "status" && e.status === "completed" && e.percent === 100)).toBe(true);
    // Both filters: two agents, running only (progress included).
    const running = of(runningOfBoth);
    expect(running.every((e) => e.status === "running")).toBe(true);
    expect(new Set(running.map((e) => e.agent_id))).toEqual(new Set([a, b]));
    expect(running.some((e) => e.event === "progress")).toBe(true);
    // No filter: what each filtered stream got is in it, in the same order.
    const all = everything.events().filter(mine).map((m) => m.id);
    for (const s of [byAgent, completed, runningOfBoth]) {
      const got = s.events().filter(mine).map((m) => m.id);
      expect(got.every((id) => all.includes(id))).toBe(true);
    }
  }, 20_000);

  test("a task made by a retry, a bulk retry or a bulk refresh sends its pending event, as a refresh's does", async () => {
    const failing = await corpus.agent({ mode: "throws" });
    const first = await enqueue(ctx, failing, { force: true });
    const second = await enqueue(ctx, failing, { force: true });
    for (const id of [first, second]) expect(await waitForStatus(ctx, id, ["failed"])).toBe("failed");
    const pending = await SseClient.open(`${base}/events?status=pending`);
    expect(await pending.next(() => true, 5000, "the first message")).toMatchObject({ event: "comment", comment: "connected" });

    const retried = await ctx.request("POST", `tasks/${first}/retry`);
    expect(retried.status).toBe(202);
    const redriven = await ctx.request("POST", "tasks/retry", { body: { status: ["failed"], agent_id: failing } });
    expect(redriven.status).toBe(202);
    const [a, b] = [await corpus.agent({ mode: "slow", ms: 50 }), await corpus.agent({ mode: "slow", ms: 50 })];
    const bulk = await ctx.request("POST", "coverage/refresh", { body: { agent_ids: [a, b] } });
    expect(bulk.status).toBe(202);
    const made: string[] = [
      retried.body.task_id,
      ...redriven.body.tasks.map((t: { task_id: string }) => t.task_id),
      ...bulk.body.tasks.map((t: { task_id: string }) => t.task_id),
    ];
    // The bulk retry takes the second (the first was retried already; its retry may have failed too by then).
    expect(redriven.body.tasks.map((t: { retry_of: string }) => t.retry_of)).toContain(second);
    expect(bulk.body.tasks).toHaveLength(2);
    const announced = await pending.until(() => {
      const got = new Set(pending.data("status").filter((e) => e.status === "pending").map((e) => e.task_id));
      return made.every((id) => got.has(id)) ? got : undefined;
    }, 10_000, "a pending event for every new task");
    expect(made.every((id) => announced.has(id))).toBe(true);
    pending.close();
  }, 30_000);

  test("refuses bad filters with 400 in the error shape", async () => {
    for (const query of ["agent_id=nope", `agent_id=${uuid()},x`, "status=bogus", "status=completed,", "unknown=1", `agent_id=${Array.from({ length: 101 }, uuid).join(",")}`]) {
      const res = await SseClient.open(`${base}/events?${query}`);
      expect({ query, status: res.status, code: JSON.parse(res.text).error.code }).toEqual({ query, status: 400, code: "validation_error" });
    }
  });

  test(`a heartbeat comment every AGENTQ_SSE_HEARTBEAT_MS (${HEARTBEAT_MS} ms here)`, async () => {
    const quiet = await SseClient.open(`${base}/events?agent_id=${uuid()}`);
    const pings = await quiet.until(() => {
      const p = quiet.messages.filter((m) => m.comment === "ping");
      return p.length >= 4 ? p : undefined;
    }, 5000, "four pings");
    quiet.close();
    const gaps = pings.slice(1).map((p, i) => p.at - pings[i]!.at);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThan(HEARTBEAT_MS * 0.5);
      expect(gap).toBeLessThan(HEARTBEAT_MS * 3);
    }
    expect(quiet.events()).toEqual([]);
  });
});

describe("publishing", () => {
  test("events published while a message is in flight go out together in the next; a task's newer progress replaces its older", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    const listener = new Redis(TEST_REDIS_URL);
    const messages: string[] = [];
    listener.on("message", (_channel: string, message: string) => messages.push(message));
    await listener.subscribe(keys.taskEventsChannel);
    try {
      const publisher = new TaskEventPublisher(ctx.redis, keys);
      const agent = uuid();
      const task = newTaskId();
      const event = (over: Partial<TaskEventData>): TaskEventData => ({
        type: "progress",
        task_id: task,
        agent_id: agent,
        status: "running",
        percent: 0,
        attempt: 1,
        at: new Date().toISOString(),
        ...over,
      });
      publisher.publish(event({ type: "status", percent: 0 }));
      for (let p = 1; p <= 50; p++) publisher.publish(event({ percent: p }));
      publisher.publish(event({ type: "status", status: "completed", percent: 100 }));
      await publisher.flushed();
      const others = Array.from({ length: 20 }, () => newTaskId());
      for (const other of others) publisher.publish(event({ task_id: other, percent: 5 }));
      await publisher.flushed();
      await eventually(async () => (messages.length >= 2 ? true : undefined), 5000, "two messages");
      expect(publisher.stats).toMatchObject({ accepted: 72, coalesced: 49, published: 23, messages: 2, failed: 0, dropped: 0 });
      const [one, two] = messages.map((m) => parseTaskEvents(m)!);
      expect(one!.events.map((e) => [e.type, e.status, e.percent])).toEqual([
        ["status", "running", 0],
        ["progress", "running", 50],
        ["status", "completed", 100],
      ]);
      expect(two!.events.map((e) => e.task_id)).toEqual(others);
      const allIds = [...one!.events, ...two!.events].map((e) => e.id);
      expect(increasing(allIds)).toBe(true);
      expect(allIds.at(-1)! - allIds[0]!).toBe(allIds.length - 1);
    } finally {
      listener.disconnect();
    }
  });

  test("with Redis unreachable a publisher loses events (counted, logged once), never throws or waits; what waits is bounded", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    // A real client of a port nobody listens on, that queues nothing while disconnected.
    const unreachable = new Redis({ port: freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const logged: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void logged.push(line) });
    const publisher = new TaskEventPublisher(unreachable, keys, { logger, maxPending: 3 });
    const event = (type: "progress" | "status"): TaskEventData => ({
      type,
      task_id: newTaskId(),
      agent_id: uuid(),
      status: type === "progress" ? "running" : "failed",
      percent: 10,
      attempt: 1,
      at: new Date().toISOString(),
    });
    // One tick: 5 progress events (room for 3), then 8 status events (room for twice as many in all).
    for (let i = 0; i < 5; i++) publisher.publish(event("progress"));
    for (let i = 0; i < 8; i++) publisher.publish(event("status"));
    await publisher.flushed();
    expect(publisher.stats).toMatchObject({ accepted: 13, published: 0, messages: 0, failed: 6, dropped: 7 });
    publisher.publish(event("status"));
    await publisher.flushed();
    expect(publisher.stats.failed).toBe(7);
    expect(logged.filter((l) => l.includes("could not publish live task events"))).toHaveLength(1);
    await publisher.close();
    publisher.publish(event("status"));
    expect(publisher.stats.accepted).toBe(14);
    unreachable.disconnect();
  });

  test("a subscriber that cannot reach Redis is not ready: streams are refused with 503, and the subscription is retried", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    const unreachable = new Redis({ port: freePort(), lazyConnect: true });
    const subscriber = new TaskEventSubscriber(unreachable, keys);
    const hub = new LiveEvents(subscriber, {
      heartbeatMs: 60_000,
      clientBufferBytes: 64 * 1024,
      maxClients: 100,
      loadTasks: (taskIds) => watchedTasks(ctx.database.db, taskIds),
      readyTimeoutMs: 200,
    });
    const app = createApp({ config: ctx.config, database: ctx.database, redis: ctx.redis, logger: ctx.logger, keys: createKeyVerifier(ctx.database.db, [TEST_API_KEY]), liveEvents: hub });
    const url = listen(app);
    try {
      const res = await SseClient.open(`${url}/events`);
      expect(res.status).toBe(503);
      expect(JSON.parse(res.text).error.code).toBe("dependency_unavailable");
      expect(subscriber.live).toBe(false);
      expect(hub.stats.open).toBe(0);
    } finally {
      await app.stop(true);
      subscriber.close();
      expect(await subscriber.ready(1000)).toBe(false);
      unreachable.disconnect();
    }
  });

  test("malformed messages and events are dropped, not passed on", () => {
    expect(parseTaskEvents("")).toBeNull();
    expect(parseTaskEvents("x [1]")).toBeNull();
    expect(parseTaskEvents("1 {}")).toBeNull();
    expect(parseTaskEvents("0 []")).toBeNull();
    const ok = { type: "progress", task_id: newTaskId(), agent_id: uuid(), status: "running", percent: 5, attempt: 1, at: new Date().toISOString() };
    const parsed = parseTaskEvents(`7 ${JSON.stringify([ok, { ...ok, percent: 101 }, { ...ok, status: "x" }, { ...ok, task_id: "t" }, ok])}`)!;
    expect(parsed.invalid).toBe(3);
    expect(parsed.events.map((e) => e.id)).toEqual([7, 11]);
  });
});

describe("a stream re-reads its task when events may have been missed", () => {
  /** A pending task nobody dispatched (no ZADD), so no engine runs it while the test changes its row. */
  async function undispatchedTask() {
    const agent = await corpus.agent();
    const { task } = await insertTask(ctx.database.db, taskInput(agent));
    return task.task_id;
  }

  test("a quiet stream finds a change no event told it about, and a deleted task", async () => {
    const changed = await undispatchedTask();
    const deleted = await undispatchedTask();
    const a = await SseClient.open(`${base}/tasks/${changed}/events`);
    const b = await SseClient.open(`${base}/tasks/${deleted}/events`);
    await a.next((m) => m.event === "task");
    await b.next((m) => m.event === "task");
    // Written behind the event bus's back (as if its message had been lost).
    await ctx.database.db.execute(sql`update background_tasks set status = 'failed', error = 'x', completed_at = now(), updated_at = now() where task_id = ${changed}`);
    await ctx.database.db.execute(sql`delete from background_tasks where task_id = ${deleted}`);
    await Promise.all([a.ends(10 * HEARTBEAT_MS), b.ends(10 * HEARTBEAT_MS)]);
    const last = a.events().at(-1)!;
    expect(last.event).toBe("status");
    expect(last.id).toBeUndefined();
    expect(JSON.parse(last.data!)).toMatchObject({ id: null, task_id: changed, status: "failed" });
    expect(b.events().map((m) => m.event)).toEqual(["task", "deleted"]);
    expect(b.data("deleted")[0]).toEqual({ task_id: deleted });
  });

  test("when the subscription comes back, per-task streams re-read their tasks at once and firehoses get resync", async () => {
    // An app of its own with a quiet-check period far away, so only the resubscription can explain what follows.
    const keys = queueKeys(ctx.config.redisPrefix);
    const subscriber = new TaskEventSubscriber(ctx.redis, keys, ctx.logger);
    const hub = new LiveEvents(subscriber, {
      heartbeatMs: 60_000,
      clientBufferBytes: 64 * 1024,
      maxClients: 100,
      loadTasks: (taskIds) => watchedTasks(ctx.database.db, taskIds),
    });
    const app = createApp({ config: ctx.config, database: ctx.database, redis: ctx.redis, logger: ctx.logger, keys: createKeyVerifier(ctx.database.db, [TEST_API_KEY]), liveEvents: hub });
    const url = listen(app);
    try {
      const taskId = await undispatchedTask();
      const watching = await SseClient.open(`${url}/tasks/${taskId}/events`);
      const firehose = await SseClient.open(`${url}/events`);
      await watching.next((m) => m.event === "task");
      await firehose.next((m) => m.comment === "connected");
      await ctx.database.db.execute(sql`update background_tasks set status = 'cancelled', completed_at = now(), updated_at = now() where task_id = ${taskId}`);
      // Cut the subscriber's connection; it reconnects and resubscribes by itself.
      const name = subscriber.connectionName;
      const list = (await ctx.redis.call("CLIENT", "LIST", "TYPE", "pubsub")) as string;
      const id = list.split("\n").find((line) => line.includes(` name=${name} `))?.match(/^id=(\d+)/)?.[1];
      expect(id).toBeDefined();
      await ctx.redis.call("CLIENT", "KILL", "ID", id!);
      await watching.ends(5000);
      expect(JSON.parse(watching.events().at(-1)!.data!)).toMatchObject({ id: null, task_id: taskId, status: "cancelled" });
      await firehose.next((m) => m.event === "resync", 5000);
      firehose.close();
    } finally {
      await app.stop(true);
      subscriber.close();
    }
  });
});

describe("limits", () => {
  test("past AGENTQ_SSE_MAX_CLIENTS streams a process answers 503 too_many_streams; a stream that ends frees its place", async () => {
    const app = createApp({
      config: { ...ctx.config, sseMaxClients: 2 },
      database: ctx.database,
      redis: ctx.redis,
      logger: ctx.logger,
      keys: createKeyVerifier(ctx.database.db, [TEST_API_KEY]),
    });
    const url = listen(app);
    try {
      const one = await SseClient.open(`${url}/events`);
      const two = await SseClient.open(`${url}/events?agent_id=${uuid()}`);
      await one.next((m) => m.comment === "connected");
      await two.next((m) => m.comment === "connected");
      const three = await SseClient.open(`${url}/events`);
      expect(three.status).toBe(503);
      expect(JSON.parse(three.text).error.code).toBe("too_many_streams");
      one.close();
      const again = await eventually(async () => {
        const s = await SseClient.open(`${url}/events`);
        if (s.status === 200) return s;
        s.close();
        return undefined;
      }, 5000, "a place to free up");
      await again.next((m) => m.comment === "connected");
      again.close();
      two.close();
    } finally {
      await app.stop(true);
    }
  });
});

describe("a slow client", () => {
  test("a client that stops reading is dropped once its buffer is full; the others keep receiving, nothing piles up", async () => {
    const keys = queueKeys(ctx.config.redisPrefix);
    const BUFFER = 16 * 1024;
    const subscriber = new TaskEventSubscriber(ctx.redis, keys, ctx.logger);
    const hub = new LiveEvents(subscriber, {
      heartbeatMs: 60_000,
      clientBufferBytes: BUFFER,
      maxClients: 100,
      loadTasks: (taskIds) => watchedTasks(ctx.database.db, taskIds),
      metrics: ctx.metrics,
    });
    const app = createApp({
      config: ctx.config,
      database: ctx.database,
      redis: ctx.redis,
      logger: ctx.logger,
      metrics: ctx.metrics,
      keys: createKeyVerifier(ctx.database.db, [TEST_API_KEY]),
      liveEvents: hub,
    });
    const url = listen(app);
    const agent = uuid();
    const good = await SseClient.open(`${url}/events?agent_id=${agent}`);
    await good.next((m) => m.comment === "connected");

    // The stalled client: a raw socket that reads the response head, then never reads again.
    const stalled = net.connect(app.server!.port!, "127.0.0.1");
    let stalledBytes = 0;
    let stalledError = "";
    const stalledClosed = new Promise<void>((resolve) => stalled.on("close", () => resolve()));
    stalled.on("error", (error) => (stalledError = (error as NodeJS.ErrnoException).code ?? error.message));
    const headOf = new Promise<void>((resolve) =>
      stalled.once("data", (chunk) => {
        stalledBytes += chunk.length;
        stalled.pause();
        stalled.on("data", (more) => (stalledBytes += more.length));
        resolve();
      }),
    );
    stalled.write(`GET /api/v1/events?agent_id=${agent} HTTP/1.1\r\nHost: x\r\nX-API-Key: ${TEST_API_KEY}\r\n\r\n`);
    await headOf;
    await eventually(async () => (hub.stats.open === 2 ? true : undefined), 5000, "two open streams");

    try {
      const publisher = new TaskEventPublisher(ctx.redis, keys);
      let published = 0;
      let publishedBytes = 0;
      let roundBytes = 0;
      // Rounds of 500 events (each its own task, so none is coalesced), each waited for at the good client.
      const round = async () => {
        const before = publishedBytes;
        let lastTask = "";
        for (let i = 0; i < 500; i++) {
          lastTask = newTaskId();
          const e: TaskEventData = { type: "progress", task_id: lastTask, agent_id: agent, status: "running", percent: 50, attempt: 1, at: new Date().toISOString() };
          publisher.publish(e);
          publishedBytes += 60 + JSON.stringify({ id: 0, ...e }).length;
          published++;
        }
        roundBytes = Math.max(roundBytes, publishedBytes - before);
        await good.next((m) => m.event === "progress" && m.data!.includes(lastTask), 10_000, "the round's last event at the good client");
      };
      for (let r = 0; r < 400 && hub.stats.dropped === 0; r++) await round();
      expect(hub.stats.dropped).toBe(1);
      expect(hub.stats.open).toBe(1);
      const droppedAfter = publishedBytes;
      // Never more than the buffer plus one burst (here: one round's message) waited for anyone.
      expect(hub.stats.maxQueuedBytes).toBeLessThanOrEqual(BUFFER + roundBytes);
      expect(hub.stats.maxQueuedBytes).toBeGreaterThan(BUFFER);
      // The good client goes on receiving, every event, in order.
      for (let r = 0; r < 4; r++) await round();
      const received = good.events().filter((m) => m.event === "progress");
      expect(received).toHaveLength(published);
      expect(increasing(ids(received))).toBe(true);

      // The stalled client's connection was reset: reading again, it gets what the sockets held, then the reset.
      stalled.resume();
      await stalledClosed;
      expect(stalledError).toBe("ECONNRESET");
      expect(stalledBytes).toBeLessThan(droppedAfter);
      const metrics = await (await fetch(`${url.replace("/api/v1", "")}/metrics`)).text();
      expect(metrics).toMatch(/^agentq_sse_clients_dropped_total [1-9]/m);
    } finally {
      good.close();
      stalled.destroy();
      await app.stop(true);
      subscriber.close();
    }
  }, 60_000);
});

describe("across processes", () => {
  test("events of a supervisor in another process reach this API process", async () => {
    // Only the child runs tasks from here on.
    await engine!.stop();
    engine = null;
    const child = await spawnSupervisor(ctx, { workers: 1, fixture: "scripted" });
    try {
      const agent = await corpus.agent({ mode: "slow", ms: 400 });
      const taskId = await enqueue(ctx, agent);
      const sse = await SseClient.open(`${base}/tasks/${taskId}/events`);
      await sse.ends(15_000);
      const statuses = sse.data("status").map((s) => s.status);
      expect(statuses.at(-1)).toBe("completed");
      expect(sse.data("progress").length).toBeGreaterThanOrEqual(1);
      const [row] = await ctx.database.db.execute<{ lease_owner: string | null }>(sql`select lease_owner from background_tasks where task_id = ${taskId}`);
      expect(row?.lease_owner).toContain(child.id);
    } finally {
      child.proc.kill("SIGTERM");
      await child.exited;
    }
  }, 30_000);
});
