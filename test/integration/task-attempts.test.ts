/**
 * A task's earlier attempts (task_attempts): every way a running task goes back to pending keeps
 * the attempt it ended (start, end, reason) in the statement that requeues it, GET /tasks/{id}
 * lists them oldest first, and a task that ends on its first attempt writes no row.
 * Real engine (supervisor + Bun Worker threads running the fixture actors), PostgreSQL and Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, startTestEngine, waitForStatus } from "../helpers/engine.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { settleTask } from "../../src/db/tasks/settle.ts";
import { requeueExpiredLeases } from "../../src/db/tasks/recovery.ts";
import { deleteExpired } from "../../src/db/retention.ts";

let ctx: TestContext;
let root: string;

beforeAll(async () => {
  ctx = await createTestContext({ ...FAST_ENGINE, maxAttempts: 3 });
  root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
});
afterAll(() => ctx.close());

const agentFor = async (mode?: string, ms?: number) =>
  (await postAgent(ctx, { taxonomy_node_ids: [root], features_config: mode ? { fixture: { mode, ms } } : {} })).agent_id;

async function refresh(agentId: string): Promise<string> {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh?force=true`);
  expect(res.status).toBe(202);
  return res.body.task_id as string;
}

interface Attempt {
  attempt: number;
  started_at: string | null;
  ended_at: string;
  outcome: string;
  refunded: boolean;
}

async function detail(taskId: string) {
  const res = await ctx.request("GET", `tasks/${taskId}`);
  expect(res.status).toBe(200);
  return res.body as { status: string; attempt: number; started_at: string | null; completed_at: string | null; attempts: Attempt[] };
}

const rowsOf = async (taskId: string) =>
  Number((await ctx.database.db.execute<{ n: number }>(sql`select count(*)::int as n from task_attempts where task_id = ${taskId}`))[0]!.n);

const at = (iso: string | null) => Date.parse(iso!);

describe("earlier attempts through a real engine", () => {
  test("a task whose database connection dies twice shows attempts 1 and 2 (start, end, reason); one that completes first time writes no row", async () => {
    const engine = await startTestEngine(ctx, { workers: 1, workerUrl: FIXTURE_WORKERS.scripted, reconcile: false });
    try {
      const lost = await refresh(await agentFor("dbLost"));
      const ok = await refresh(await agentFor());
      expect(await waitForStatus(ctx, lost, ["failed"])).toBe("failed");
      expect(await waitForStatus(ctx, ok, ["completed"])).toBe("completed");

      const task = await detail(lost);
      expect(task.attempt).toBe(3);
      expect(task.attempts.map((a) => [a.attempt, a.refunded])).toEqual([[1, false], [2, false]]);
      for (const a of task.attempts) {
        expect(a.outcome).toBe("database connection lost: fixture: connection lost");
        expect(at(a.ended_at)).toBeGreaterThanOrEqual(at(a.started_at));
      }
      // In order, without overlaps: each attempt starts after the one before it ended; the last
      // attempt is the task's own started_at / completed_at.
      expect(at(task.attempts[1]!.started_at)).toBeGreaterThanOrEqual(at(task.attempts[0]!.ended_at));
      expect(at(task.started_at)).toBeGreaterThanOrEqual(at(task.attempts[1]!.ended_at));
      expect(at(task.completed_at)).toBeGreaterThanOrEqual(at(task.started_at));

      expect((await detail(ok)).attempts).toEqual([]);
      expect(await rowsOf(ok)).toBe(0);
      // The agent-scoped status route shows the same task.
      const scoped = await ctx.request("GET", `agents/${(await ctx.request("GET", `tasks/${lost}`)).body.agent_id}/coverage/status/${lost}`);
      expect(scoped.body.attempts).toEqual(task.attempts);
    } finally {
      await engine.stop();
    }
  }, 30_000);

  test("a task handed back on shutdown keeps that attempt, marked refunded, and its number is used again", async () => {
    const engine = await startTestEngine(ctx, {
      workers: 1,
      workerUrl: FIXTURE_WORKERS.scripted,
      reconcile: false,
      config: { drainDeadlineMs: 200 },
    });
    let id: string;
    try {
      id = await refresh(await agentFor("slow", 20_000));
      await waitForStatus(ctx, id, ["running"]);
    } finally {
      await engine.stop();
    }
    expect(await waitForStatus(ctx, id, ["pending"])).toBe("pending");
    const handedBack = await detail(id);
    expect(handedBack.attempt).toBe(0);
    expect(handedBack.started_at).toBeNull();
    expect(handedBack.attempts).toHaveLength(1);
    expect(handedBack.attempts[0]).toMatchObject({ attempt: 1, outcome: "handed back on shutdown", refunded: true });
    expect(at(handedBack.attempts[0]!.ended_at)).toBeGreaterThanOrEqual(at(handedBack.attempts[0]!.started_at));

    // The next claim is attempt 1 again: a second row with the same number, no collision.
    const claim = await claimTask(ctx.database.db, id, "w-next", 60_000);
    expect(claim?.attempt).toBe(1);
    await settleTask(ctx.database.db, id, claim!.leaseToken, { kind: "retry", error: "worker thread crashed (exit code 1)", refund: false });
    const again = await detail(id);
    expect(again.attempts.map((a) => [a.attempt, a.outcome, a.refunded])).toEqual([
      [1, "handed back on shutdown", true],
      [1, "worker thread crashed (exit code 1)", false],
    ]);
  }, 30_000);
});

describe("the requeue statements", () => {
  test("a lapsed lease requeued by the reconciler's statement keeps the lapsed attempt", async () => {
    const { task } = await insertTask(ctx.database.db, taskInput(await agentFor(), { maxAttempts: 3 }));
    const claim = await claimTask(ctx.database.db, task.task_id, "dead-owner", 1);
    const running = await detail(task.task_id);
    // The 1 ms lease lapses at once; the statement requeues it as soon as PostgreSQL's clock says so.
    await eventually(async () => ((await requeueExpiredLeases(ctx.database.db)).some((r) => r.task_id === task.task_id) ? true : undefined));
    const { attempts, status, started_at } = await detail(task.task_id);
    expect(status).toBe("pending");
    expect(started_at).toBeNull();
    expect(attempts).toEqual([
      { attempt: claim!.attempt, started_at: running.started_at, ended_at: attempts[0]!.ended_at, outcome: "lease expired (owner died)", refunded: false },
    ]);
  });

  test("an attempt that ends its task, or a settle whose lease was lost, writes no row", async () => {
    const agent = await agentFor();
    const { task: last } = await insertTask(ctx.database.db, taskInput(agent, { maxAttempts: 1 }));
    const claim = await claimTask(ctx.database.db, last.task_id, "w", 60_000);
    // Out of attempts: the retry fails the task, and that last attempt is the task's own.
    expect((await settleTask(ctx.database.db, last.task_id, claim!.leaseToken, { kind: "retry", error: "lease expired (owner died)", refund: false }))?.status).toBe("failed");
    expect(await rowsOf(last.task_id)).toBe(0);

    const { task: fenced } = await insertTask(ctx.database.db, taskInput(agent, { maxAttempts: 3 }));
    await claimTask(ctx.database.db, fenced.task_id, "w", 60_000);
    expect(await settleTask(ctx.database.db, fenced.task_id, crypto.randomUUID(), { kind: "retry", error: "x", refund: false })).toBeNull();
    expect(await rowsOf(fenced.task_id)).toBe(0);
  });

  test("retention deletes a task's attempts with the task", async () => {
    const { task } = await insertTask(ctx.database.db, taskInput(await agentFor(), { maxAttempts: 3 }));
    const first = await claimTask(ctx.database.db, task.task_id, "w", 60_000);
    await settleTask(ctx.database.db, task.task_id, first!.leaseToken, { kind: "retry", error: "worker thread crashed (exit code 3)", refund: false });
    const second = await claimTask(ctx.database.db, task.task_id, "w", 60_000);
    await settleTask(ctx.database.db, task.task_id, second!.leaseToken, { kind: "failed", error: "boom" });
    expect(await rowsOf(task.task_id)).toBe(1);
    await ctx.database.db.execute(sql`update background_tasks set completed_at = now() - interval '2 days' where task_id = ${task.task_id}`);
    await deleteExpired(ctx.database.db, 86_400_000, 86_400_000 * 365);
    expect(await rowsOf(task.task_id)).toBe(0);
  });

  test("an unknown task is still 404", async () => {
    const res = await ctx.request("GET", "tasks/agent-coverage-01900000-0000-7000-8000-000000000000");
    expect(res.status).toBe(404);
  });
});
