/**
 * Several tasks per actor, through real supervisor threads: a cancel or a
 * timeout reaches the statement a task runs in PostgreSQL (no thread
 * terminated), and a thread terminated for one task that ignores its stop
 * hands its other tasks back at once, with their attempt refunded.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { FAST_ENGINE, startTestEngine, waitForStatus } from "../helpers/engine.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import type { SupervisorEvent } from "../../src/supervisor/supervisor.ts";

let ctx: TestContext;
let agentFor: (mode?: string, ms?: number) => Promise<string>;
beforeAll(async () => {
  ctx = await createTestContext({ ...FAST_ENGINE, taskTimeoutMs: 60_000 });
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "r" }]);
  agentFor = async (mode, ms) =>
    (await postAgent(ctx, { taxonomy_node_ids: [root], features_config: mode ? { fixture: { mode, ms } } : {} })).agent_id;
});
afterAll(() => ctx.close());

const refresh = async (agentId: string) => {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh?force=true`, { body: {} });
  expect(res.status).toBe(202);
  return res.body.task_id as string;
};

const finished = (taskId: string) => (e: SupervisorEvent) => e.type === "task_finished" && e.taskId === taskId;
const started = (taskId: string) => (e: SupervisorEvent) => e.type === "task_started" && e.taskId === taskId;

const sleepingBackends = async () =>
  (
    await ctx.database.db.execute<{ n: number }>(sql`
    select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'select pg_sleep(30)%'
      and datname = current_database()`)
  )[0]!.n;

test("DELETE of a task blocked inside a PostgreSQL statement: cancelled at once, its statement cancelled, no thread terminated", async () => {
  const engine = await startTestEngine(ctx, { workers: 1, concurrency: 2, workerUrl: FIXTURE_WORKERS.scripted });
  try {
    const blocked = await refresh(await agentFor("pgSleep"));
    await engine.waitForEvent(started(blocked));
    await waitForStatus(ctx, blocked, ["running"]);
    const sent = performance.now();
    expect((await ctx.request("DELETE", `tasks/${blocked}`)).status).toBe(204);
    // Durable in the DELETE itself.
    expect((await ctx.request("GET", `tasks/${blocked}`)).body.status).toBe("cancelled");
    const done = await engine.waitForEvent(finished(blocked), 2_000);
    const stoppedMs = performance.now() - sent;
    // Its own actor stopped it (the grace period is 300 ms; a terminated thread would report "supervisor").
    expect(done).toMatchObject({ outcome: "cancelled" });
    expect((done as { workerId: string }).workerId).not.toBe("supervisor");
    expect(stoppedMs).toBeLessThan(FAST_ENGINE.cancelGraceMs!);
    // The statement was cancelled, not abandoned: the backend is no longer running it.
    expect(await sleepingBackends()).toBe(0);
    expect(engine.events.some((e) => e.type === "worker_replaced")).toBe(false);
    // The slot is free: the next task runs on the same thread.
    const next = await refresh(await agentFor());
    expect(await waitForStatus(ctx, next, ["completed"])).toBe("completed");
  } finally {
    await engine.stop();
  }
});

test("a timeout inside a PostgreSQL statement cancels the statement and ends the task timeout, without terminating the thread", async () => {
  const engine = await startTestEngine(ctx, { workers: 1, concurrency: 2, workerUrl: FIXTURE_WORKERS.scripted, config: { taskTimeoutMs: 300 } });
  try {
    // The time limit is written on the task at enqueue: this context's API uses its own config.
    const id = await refresh(await agentFor("pgSleep"));
    await ctx.database.db.execute(sql`update background_tasks set timeout_ms = 300 where task_id = ${id}`);
    const done = await engine.waitForEvent(finished(id), 5_000);
    expect(done).toMatchObject({ outcome: "timed_out" });
    expect((done as { workerId: string }).workerId).not.toBe("supervisor");
    expect(await sleepingBackends()).toBe(0);
    expect(engine.events.some((e) => e.type === "worker_replaced")).toBe(false);
  } finally {
    await engine.stop();
  }
});

test("a thread terminated for one task that ignores its stop hands its other tasks back at once, attempt refunded, and they complete", async () => {
  const engine = await startTestEngine(ctx, { workers: 1, concurrency: 3, workerUrl: FIXTURE_WORKERS.scripted });
  try {
    const hung = await refresh(await agentFor("hangs"));
    const siblings = [await refresh(await agentFor("slow", 2_000)), await refresh(await agentFor("slow", 2_000))];
    for (const id of [hung, ...siblings]) await engine.waitForEvent(started(id));
    const sent = performance.now();
    expect((await ctx.request("DELETE", `tasks/${hung}`)).status).toBe(204);
    // Past the grace period the thread is terminated; the siblings are settled by the supervisor right then.
    for (const id of siblings) {
      const back = await engine.waitForEvent((e) => finished(id)(e) && (e as { workerId: string }).workerId === "supervisor", 3_000);
      expect(back).toMatchObject({ outcome: "released" });
    }
    const handedBackMs = performance.now() - sent;
    // At once: well before their leases (1.5 s) could have lapsed.
    expect(handedBackMs).toBeLessThan(FAST_ENGINE.cancelGraceMs! + 800);
    await engine.waitForEvent((e) => e.type === "worker_replaced");
    for (const id of siblings) expect(await waitForStatus(ctx, id, ["completed"])).toBe("completed");
    const rows = await ctx.database.db.execute<{ task_id: string; status: string; attempt: number }>(
      sql`select task_id, status, attempt from background_tasks where task_id = any(${`{${[hung, ...siblings].join(",")}}`}::text[])`,
    );
    const byId = new Map(rows.map((r) => [r.task_id, r]));
    expect(byId.get(hung)).toMatchObject({ status: "cancelled" });
    // Refunded, then claimed once more: attempt 1, not 2.
    for (const id of siblings) expect(byId.get(id)).toMatchObject({ status: "completed", attempt: 1 });
    console.log(`siblings handed back ${handedBackMs.toFixed(0)} ms after the cancel (grace ${FAST_ENGINE.cancelGraceMs} ms)`);
  } finally {
    await engine.stop();
  }
});

test("a thread that dies after its completion committed, before saying so: the task stays completed once, and is counted as completed", async () => {
  const engine = await startTestEngine(ctx, { workers: 1, concurrency: 1, workerUrl: FIXTURE_WORKERS.diesAfterCommit });
  try {
    const id = await refresh(await agentFor());
    const done = await engine.waitForEvent(finished(id), 10_000);
    expect(done).toMatchObject({ outcome: "completed", workerId: "supervisor", status: "completed" });
    const [row] = await ctx.database.db.execute<{ status: string; attempt: number }>(sql`select status, attempt from background_tasks where task_id = ${id}`);
    expect(row).toEqual({ status: "completed", attempt: 1 });
    const history = await ctx.database.db.execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where task_id = ${id}`);
    expect(history[0]!.n).toBe(1);
    await engine.waitForEvent((e) => e.type === "worker_replaced");
  } finally {
    await engine.stop();
  }
});
