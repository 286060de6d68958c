/**
 * Scheduled refreshes: the API (PUT/GET/DELETE /agents/{id}/schedule, next_run_at on the
 * agent, schedule_id on the task), bad input, and the scheduler against the real PostgreSQL
 * and Redis: one task per slot with three schedulers racing, a failure between the
 * compare-and-set and the insert writes nothing, one catch-up run after downtime, the unforced
 * dedup, and a lost dispatch repaired by the reconciler.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import type { RedisClient } from "../../src/queue/redisClient.ts";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { eventually, startTestEngine, waitForStatus } from "../helpers/engine.ts";
import { captureLogs, freePort } from "../helpers/metrics.ts";
import { urlFor } from "../helpers/db.ts";
import { openDatabase, type Database } from "../../src/db/client.ts";
import { fireSlots, lockDueSchedules, type FiredSlot } from "../../src/db/schedules.ts";
import { Scheduler } from "../../src/schedules/scheduler.ts";
import { Dispatcher } from "../../src/queue/dispatch.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { Reconciler } from "../../src/supervisor/reconciler.ts";
import { newTaskId } from "../../src/core/tasks.ts";
import { toIso } from "../../src/db/values.ts";

/** ms since the epoch of PostgreSQL's timestamptz text. */
const ms = (text: string) => Date.parse(toIso(text));

let ctx: TestContext;
const VERSION = "sched-1";
const root = uuid();
const child = uuid();

beforeAll(async () => {
  ctx = await createTestContext({ stalePendingMs: 0 });
  await postTaxonomy(ctx, VERSION, [
    { node_id: root, label: "root" },
    { node_id: child, label: "child", parent_ids: [root] },
  ]);
});
afterAll(() => ctx.close());

const newAgent = async () => (await postAgent(ctx, { taxonomy_node_ids: [root], taxonomy_version: VERSION })).agent_id;
const put = (agentId: string, body: unknown) => ctx.request("PUT", `agents/${agentId}/schedule`, { body });

const schedulerConfig = { scheduleEveryMs: 20, taskTimeoutMs: 60_000, maxAttempts: 3 };
const dispatcher = (redis: RedisClient = ctx.redis) => new Dispatcher(redis, queueKeys(ctx.config.redisPrefix));
const newScheduler = (database: Database = ctx.database, onFired?: (f: FiredSlot[]) => void, redis?: RedisClient) =>
  new Scheduler({ config: schedulerConfig, database, dispatcher: dispatcher(redis), logger: ctx.logger }, onFired);

async function scheduledTasks(scheduleId: string) {
  return ctx.database.db.execute<{ task_id: string; status: string; created_at: string; priority: string; webhook_url: string | null }>(
    sql`select task_id, status, created_at::text, priority, webhook_url from background_tasks where schedule_id = ${scheduleId} order by created_at`,
  );
}

async function scheduleRow(scheduleId: string) {
  const [row] = await ctx.database.db.execute<{ next_run_at: string | null; last_run_at: string | null; slot: string | null }>(
    sql`select next_run_at, last_run_at, next_run_at::text as slot from agent_schedules where schedule_id = ${scheduleId}`,
  );
  return row!;
}

/** Moves a schedule's next slot to `interval` ago (downtime, or simply: it is due now). */
const makeDue = (scheduleId: string, ago = "0 seconds") =>
  ctx.database.db.execute(sql`update agent_schedules set next_run_at = now() - ${ago}::interval where schedule_id = ${scheduleId}`);

/** Nothing due anywhere else in this file's database, so a scheduler pass sees only this test's schedule. */
beforeEach(() => ctx.database.db.execute(sql`delete from agent_schedules`));

describe("API", () => {
  test("PUT creates (201), GET reads, a second PUT replaces (200, same id), DELETE removes; the agent shows next_run_at", async () => {
    const agentId = await newAgent();
    expect((await ctx.request("GET", `agents/${agentId}`)).body.next_run_at).toBeNull();
    const before = Date.now();
    const created = await put(agentId, { every_seconds: 3600, priority: "high" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ agent_id: agentId, cron: null, every_seconds: 3600, timezone: "UTC", priority: "high", webhook_url: null, enabled: true, last_run_at: null });
    const next = Date.parse(created.body.next_run_at);
    expect(next).toBeGreaterThanOrEqual(before + 3600_000);
    expect(next).toBeLessThanOrEqual(Date.now() + 3600_000);
    expect((await ctx.request("GET", `agents/${agentId}/schedule`)).body).toEqual(created.body);
    // The agent's answers (one agent, and the list) show the schedule's next run.
    expect((await ctx.request("GET", `agents/${agentId}`)).body.next_run_at).toBe(created.body.next_run_at);
    const listed = (await ctx.request("GET", "agents?max_results=100")).body.agents.find((a: { agent_id: string }) => a.agent_id === agentId);
    expect(listed.next_run_at).toBe(created.body.next_run_at);

    // Same timing, another priority: replaced in place, and the pending slot is kept.
    const replaced = await put(agentId, { every_seconds: 3600, priority: "low" });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ schedule_id: created.body.schedule_id, priority: "low", next_run_at: created.body.next_run_at, created_at: created.body.created_at });

    // New timing: a cron in Paris time; next_run_at is its next match, fields not sent take their defaults.
    const cron = await put(agentId, { cron: "0 3 * * *", timezone: "europe/paris" });
    expect(cron.status).toBe(200);
    expect(cron.body).toMatchObject({ schedule_id: created.body.schedule_id, cron: "0 3 * * *", every_seconds: null, timezone: "Europe/Paris", priority: "medium" });
    const parisTime = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    expect(parisTime.format(new Date(cron.body.next_run_at))).toBe("03:00:00");
    expect(Date.parse(cron.body.next_run_at) - Date.now()).toBeLessThanOrEqual(25 * 3600_000);

    // Disabled: kept, fires nothing, no next run.
    const disabled = await put(agentId, { cron: "0 3 * * *", timezone: "Europe/Paris", enabled: false });
    expect(disabled.body).toMatchObject({ enabled: false, next_run_at: null });
    expect((await ctx.request("GET", `agents/${agentId}`)).body.next_run_at).toBeNull();

    expect((await ctx.request("DELETE", `agents/${agentId}/schedule`)).status).toBe(204);
    const gone = await ctx.request("GET", `agents/${agentId}/schedule`);
    expect(gone.status).toBe(404);
    expect(gone.body.error).toMatchObject({ code: "not_found", message: `agent ${agentId} has no schedule` });
    expect((await ctx.request("DELETE", `agents/${agentId}/schedule`)).status).toBe(404);
  });

  test("bad input is 400 naming the field; an unknown agent is 404", async () => {
    const agentId = await newAgent();
    const bad = async (body: unknown) => {
      const res = await put(agentId, body);
      expect({ body, status: res.status, code: res.body?.error?.code }).toEqual({ body, status: 400, code: "validation_error" });
      return res.body.error as { message: string; details: { issues: { path: string }[]; cron_field?: string } };
    };
    const minute = await bad({ cron: "61 * * * *" });
    expect(minute.message).toBe("invalid body: /cron minute field: Invalid value for minute: 61");
    expect(minute.details.cron_field).toBe("minute");
    expect((await bad({ cron: "every day" })).message).toStartWith("invalid body: /cron ");
    expect((await bad({ cron: "0 0 30 2 *" })).message).toBe("invalid body: /cron the expression matches no future date");
    expect((await bad({ every_seconds: 0 })).message).toStartWith("invalid body: /every_seconds ");
    expect((await bad({ every_seconds: 1.5 })).message).toStartWith("invalid body: /every_seconds ");
    const tz = await bad({ cron: "0 3 * * *", timezone: "Mars/Olympus" });
    expect(tz.message).toStartWith("invalid body: /timezone unknown time zone");
    const both = await bad({ cron: "0 3 * * *", every_seconds: 60 });
    expect(both.message).toBe("invalid body: exactly one of cron and every_seconds is required");
    expect(both.details.issues.map((i) => i.path)).toEqual(["/cron", "/every_seconds"]);
    expect((await bad({ priority: "high" })).message).toBe("invalid body: exactly one of cron and every_seconds is required");
    expect((await bad({ every_seconds: 60, priority: "urgent" })).message).toStartWith("invalid body: /priority");
    expect((await bad({ every_seconds: 60, extra: 1 })).message).toContain("extra");
    // Nothing was written by any of them.
    expect((await ctx.request("GET", `agents/${agentId}/schedule`)).status).toBe(404);

    const unsafe = await put(agentId, { every_seconds: 60, webhook_url: "https://10.0.0.1/hook" });
    expect(unsafe.status).toBe(400);
    expect(unsafe.body.error.code).toBe("unsafe_webhook_url");

    const unknown = uuid();
    for (const method of ["PUT", "GET", "DELETE"]) {
      const res = await ctx.request(method, `agents/${unknown}/schedule`, method === "PUT" ? { body: { every_seconds: 60 } } : {});
      expect({ method, status: res.status, code: res.body.error.code, message: res.body.error.message }).toEqual({
        method,
        status: 404,
        code: "not_found",
        message: `agent ${unknown} not found`,
      });
    }
  });

  test("the OpenAPI document describes the three operations, their body and answers", async () => {
    const spec = (await ctx.request("GET", "/swagger/json", { anonymous: true })).body;
    const path = spec.paths["/api/v1/agents/{agent_id}/schedule"];
    expect(Object.keys(path).sort()).toEqual(["delete", "get", "put"]);
    const body = path.put.requestBody.content["application/json"].schema;
    expect(Object.keys(body.properties).sort()).toEqual(["cron", "enabled", "every_seconds", "priority", "timezone", "webhook_url"]);
    expect(body.properties.every_seconds.minimum).toBe(1);
    expect(Object.keys(path.put.responses)).toEqual(expect.arrayContaining(["200", "201", "400", "404"]));
    expect(Object.keys(path.delete.responses)).toEqual(expect.arrayContaining(["204", "404"]));
    expect(spec.paths["/api/v1/agents/{agent_id}"].get.responses["200"].content["application/json"].schema.properties.next_run_at).toBeDefined();
  });

  test("deleting the agent deletes its schedule", async () => {
    const agentId = await newAgent();
    const { schedule_id } = (await put(agentId, { every_seconds: 60 })).body;
    expect((await ctx.request("DELETE", `agents/${agentId}`)).status).toBe(204);
    expect(await ctx.database.db.execute(sql`select 1 from agent_schedules where schedule_id = ${schedule_id}`)).toHaveLength(0);
  });
});

describe("scheduler", () => {
  test("a due slot enqueues one task with schedule_id, the schedule's priority and webhook, dispatched to Redis; the schedule moves on", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { every_seconds: 60, priority: "high", webhook_url: "https://93.184.215.14/hook" })).body;
    await makeDue(schedule.schedule_id);
    const slot = (await scheduleRow(schedule.schedule_id)).slot!;
    const fired = await newScheduler().fireDue();
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ schedule_id: schedule.schedule_id, agent_id: agentId, slot, created: true, priority: "high" });
    const [task] = await scheduledTasks(schedule.schedule_id);
    expect(task).toMatchObject({ task_id: fired[0]!.task_id!, status: "pending", priority: "high", webhook_url: "https://93.184.215.14/hook" });
    expect(await ctx.redis.zscore(queueKeys(ctx.config.redisPrefix).queue("high"), task!.task_id)).not.toBeNull();
    // The task's answer names its schedule.
    const view = await ctx.request("GET", `tasks/${task!.task_id}`);
    expect(view.body.schedule_id).toBe(schedule.schedule_id);
    // Advanced on the grid, into the future; last_run_at recorded. The agent shows the new next_run_at.
    const row = await scheduleRow(schedule.schedule_id);
    expect(row.last_run_at).not.toBeNull();
    expect(new Date(row.next_run_at!).toISOString()).toBe(fired[0]!.next_run_at!);
    expect((await ctx.request("GET", `agents/${agentId}`)).body.next_run_at).toBe(fired[0]!.next_run_at);
    expect(Date.parse(fired[0]!.next_run_at!)).toBeGreaterThan(Date.now());
    // Nothing is due any more.
    expect(await newScheduler().fireDue()).toEqual([]);
    await ctx.request("DELETE", `tasks/${task!.task_id}`);
  });

  test("three schedulers racing on an every_seconds=1 schedule: each slot fires once, none is skipped, one task per slot", async () => {
    const agentId = await newAgent();
    // Workers run the tasks, so each slot finds no pending refresh to join and makes a task of its own.
    const engine = await startTestEngine(ctx, { workers: 2, schedule: false });
    const pools = [0, 1, 2].map(() => openDatabase(ctx.config.databaseUrl, { max: 2, applicationName: "agentq-test-scheduler" }));
    const fired: FiredSlot[] = [];
    const schedulers = pools.map((pool) => newScheduler(pool, (f) => fired.push(...f)));
    try {
      const schedule = (await put(agentId, { every_seconds: 1 })).body;
      const anchor = Date.parse(schedule.next_run_at);
      for (const s of schedulers) s.start();
      // Several seconds of slots, waited for by what they write (not a blind sleep).
      await eventually(async () => (fired.length >= 5 ? true : undefined), 15_000, "five fired slots");
      await Promise.all(schedulers.map((s) => s.stop()));

      // Each slot fired once, by one of the three, in order: every fire's next slot is the slot the next fire fired.
      const slots = fired.map((f) => ms(f.slot));
      expect(new Set(slots).size).toBe(slots.length);
      const ordered = [...fired].sort((a, b) => Date.parse(a.next_run_at!) - Date.parse(b.next_run_at!));
      for (let i = 1; i < ordered.length; i++) expect(toIso(ordered[i]!.slot)).toBe(ordered[i - 1]!.next_run_at!);
      expect(Math.min(...slots)).toBe(anchor);
      // Every slot made a task (the previous one had been run), with the schedule's id.
      const tasks = await scheduledTasks(schedule.schedule_id);
      expect(tasks.map((t) => t.task_id).sort()).toEqual(fired.map((f) => f.task_id!).sort());
      expect(fired.every((f) => f.created)).toBe(true);
      // Counted per slot from the database alone: a task belongs to the slot of the grid it was created in.
      const perSlot = new Map<number, number>();
      for (const t of tasks) {
        const index = Math.floor((ms(t.created_at) - anchor) / 1000);
        perSlot.set(index, (perSlot.get(index) ?? 0) + 1);
      }
      expect([...perSlot.values()].every((n) => n === 1)).toBe(true);
      // Each of them runs to completion.
      for (const t of tasks) await waitForStatus(ctx, t.task_id, ["completed"]);
    } finally {
      await Promise.all(schedulers.map((s) => s.stop()));
      await Promise.all(pools.map((p) => p.close()));
      await engine.stop();
    }
  }, 30_000);

  test("a failure between the compare-and-set and the insert rolls both back: nothing written, the next pass fires the slot once", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { every_seconds: 60 })).body;
    await makeDue(schedule.schedule_id);
    const before = await scheduleRow(schedule.schedule_id);
    // The statement's update (compare-and-set) runs, then its insert violates a CHECK (timeout_ms > 0): the statement fails whole.
    const failing = ctx.database.db.transaction(async (tx) => {
      const due = await lockDueSchedules(tx, 10);
      expect(due.map((d) => d.schedule_id)).toEqual([schedule.schedule_id]);
      return fireSlots(tx, due.map((d) => ({ schedule_id: d.schedule_id, slot: d.slot, next: new Date(Date.now() + 60_000), task_id: newTaskId() })), { timeoutMs: 0, maxAttempts: 3 });
    });
    await expect(failing).rejects.toThrow();
    expect(await scheduleRow(schedule.schedule_id)).toEqual(before);
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(0);

    // A crash after the statement but before the commit: the transaction is rolled back, nothing is written either.
    const crashed = ctx.database.db.transaction(async (tx) => {
      const due = await lockDueSchedules(tx, 10);
      const fired = await fireSlots(tx, due.map((d) => ({ schedule_id: d.schedule_id, slot: d.slot, next: new Date(Date.now() + 60_000), task_id: newTaskId() })), { timeoutMs: 60_000, maxAttempts: 3 });
      expect(fired.map((f) => f.created)).toEqual([true]);
      throw new Error("process died before COMMIT");
    });
    await expect(crashed).rejects.toThrow("process died before COMMIT");
    expect(await scheduleRow(schedule.schedule_id)).toEqual(before);
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(0);

    // The slot is still due: the next pass fires it, once.
    const fired = await newScheduler().fireDue();
    expect(fired.map((f) => [f.schedule_id, f.slot, f.created])).toEqual([[schedule.schedule_id, before.slot!, true]]);
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(1);
    expect(await newScheduler().fireDue()).toEqual([]);
  });

  test("a slot another transaction holds is skipped, not waited for, and fired by the next pass", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { every_seconds: 60 })).body;
    await makeDue(schedule.schedule_id);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = ctx.database.db.transaction(async (tx) => {
      await tx.execute(sql`select 1 from agent_schedules where schedule_id = ${schedule.schedule_id} for update`);
      locked();
      await held;
    });
    await isLocked;
    const started = performance.now();
    expect(await newScheduler().fireDue()).toEqual([]);
    expect(performance.now() - started).toBeLessThan(1000);
    release();
    await holder;
    expect((await newScheduler().fireDue()).map((f) => f.schedule_id)).toEqual([schedule.schedule_id]);
  });

  test("catch-up: slots missed for three days give exactly one run, then the next slot after now", async () => {
    const agentId = await newAgent();
    const interval = (await put(agentId, { every_seconds: 60 })).body;
    await makeDue(interval.schedule_id, "3 days");
    const cronAgent = await newAgent();
    const cron = (await put(cronAgent, { cron: "*/5 * * * *", timezone: "Asia/Kolkata" })).body;
    await makeDue(cron.schedule_id, "1 day");
    const missedSlot = Date.parse((await scheduleRow(interval.schedule_id)).next_run_at!);

    const fired = await newScheduler().fireDue();
    const now = Date.now();
    expect(fired.map((f) => f.schedule_id).sort()).toEqual([interval.schedule_id, cron.schedule_id].sort());
    expect(await scheduledTasks(interval.schedule_id)).toHaveLength(1);
    expect(await scheduledTasks(cron.schedule_id)).toHaveLength(1);
    // Every-60-s: the next grid point after now (on the grid of the missed slot).
    const next = Date.parse((await scheduleRow(interval.schedule_id)).next_run_at!);
    expect(next).toBeGreaterThan(now - 1000);
    expect(next - now).toBeLessThanOrEqual(60_000);
    expect((next - missedSlot) % 60_000).toBe(0);
    // Cron: the next five-minute mark after now.
    const cronNext = Date.parse((await scheduleRow(cron.schedule_id)).next_run_at!);
    expect(cronNext % 300_000).toBe(0);
    expect(cronNext - now).toBeLessThanOrEqual(300_000);
    // No burst: nothing more is due.
    expect(await newScheduler().fireDue()).toEqual([]);
  });

  test("a slot while the agent has a pending refresh joins it instead of piling up a second one", async () => {
    const agentId = await newAgent();
    const pending = (await ctx.request("POST", `agents/${agentId}/coverage/refresh`)).body;
    const schedule = (await put(agentId, { every_seconds: 60 })).body;
    await makeDue(schedule.schedule_id);
    const fired = await newScheduler().fireDue();
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ created: false, task_id: pending.task_id });
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(0);
    const tasks = await ctx.database.db.execute(sql`select task_id from background_tasks where agent_id = ${agentId}`);
    expect(tasks).toHaveLength(1);
    // The slot is spent all the same.
    expect(Date.parse((await scheduleRow(schedule.schedule_id)).next_run_at!)).toBeGreaterThan(Date.now());
    // And a refresh request while the scheduled task is pending joins that one (it holds the dedup slot).
    await ctx.request("DELETE", `tasks/${pending.task_id}`);
    await makeDue(schedule.schedule_id);
    const [own] = await newScheduler().fireDue();
    expect(own!.created).toBe(true);
    expect((await ctx.request("POST", `agents/${agentId}/coverage/refresh`)).body.task_id).toBe(own!.task_id);
  });

  test("disabled and deleted schedules fire nothing", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { every_seconds: 60, enabled: false })).body;
    await ctx.database.db.execute(sql`update agent_schedules set next_run_at = now() - interval '1 minute' where schedule_id = ${schedule.schedule_id}`);
    expect(await newScheduler().fireDue()).toEqual([]);
    const other = await newAgent();
    const deleted = (await put(other, { every_seconds: 60 })).body;
    await makeDue(deleted.schedule_id);
    await ctx.request("DELETE", `agents/${other}/schedule`);
    expect(await newScheduler().fireDue()).toEqual([]);
  });

  test("a dispatch lost after the commit (Redis unreachable) leaves the task pending; the reconciler dispatches it", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { every_seconds: 60 })).body;
    await makeDue(schedule.schedule_id);
    const unreachable = new Redis(`redis://127.0.0.1:${freePort()}`, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    unreachable.on("error", () => {});
    try {
      const [fired] = await newScheduler(ctx.database, undefined, unreachable).fireDue();
      expect(fired!.created).toBe(true);
      const key = queueKeys(ctx.config.redisPrefix).queue("medium");
      expect(await ctx.redis.zscore(key, fired!.task_id!)).toBeNull();
      expect((await scheduledTasks(schedule.schedule_id)).map((t) => t.status)).toEqual(["pending"]);
      const reconciler = new Reconciler({ config: ctx.config, database: ctx.database, dispatcher: dispatcher(), logger: ctx.logger });
      const report = await reconciler.reconcileOnce();
      expect(report.redispatched).toBeGreaterThanOrEqual(1);
      expect(await ctx.redis.zscore(key, fired!.task_id!)).not.toBeNull();
      await ctx.request("DELETE", `tasks/${fired!.task_id}`);
    } finally {
      unreachable.disconnect();
    }
  });

  test("a schedule whose next run cannot be computed (a time zone the runtime does not know) fires its slot, then goes quiet", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { cron: "0 3 * * *" })).body;
    await ctx.database.db.execute(sql`update agent_schedules set timezone = 'Mars/Olympus', next_run_at = now() where schedule_id = ${schedule.schedule_id}`);
    const logs = captureLogs();
    const scheduler = new Scheduler({ config: schedulerConfig, database: ctx.database, dispatcher: dispatcher(), logger: logs.logger });
    const fired = await scheduler.fireDue();
    expect(fired.map((f) => [f.schedule_id, f.created, f.next_run_at])).toEqual([[schedule.schedule_id, true, null]]);
    expect(logs.lines.some((l) => l.msg === "cannot compute the next run of a schedule; it stops after this slot" && l.schedule_id === schedule.schedule_id)).toBe(true);
    expect((await ctx.request("GET", `agents/${agentId}`)).body.next_run_at).toBeNull();
    expect(await scheduler.fireDue()).toEqual([]);
  });

  test("a pass that fails (PostgreSQL refuses the connection) is logged and the scheduler keeps trying", async () => {
    const missing = openDatabase(urlFor(`agentq_test_missing_${process.pid}`), { max: 1 });
    const logs = captureLogs();
    const scheduler = new Scheduler({ config: schedulerConfig, database: missing, dispatcher: dispatcher(), logger: logs.logger });
    scheduler.start();
    try {
      const failed = () => logs.lines.filter((l) => l.msg === "schedule pass failed; the slots stay due and the next pass fires them").length;
      await eventually(async () => (failed() >= 2 ? true : undefined), 10_000, "two failed passes");
    } finally {
      await scheduler.stop();
      await missing.close();
    }
  });

  test("the engine runs a scheduler (startEngine, as in production)", async () => {
    const agentId = await newAgent();
    const schedule = (await put(agentId, { every_seconds: 3600 })).body;
    await makeDue(schedule.schedule_id);
    const on = await startTestEngine(ctx, { workers: 1, config: { scheduleEveryMs: 20 } });
    try {
      await eventually(async () => ((await scheduledTasks(schedule.schedule_id)).length === 1 ? true : undefined), 5000, "the engine's scheduler to fire");
    } finally {
      await on.stop();
    }
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(1);
  });
});
