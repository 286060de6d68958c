/**
 * Strict priority order through the API and a real engine, reused by every Redis deployment's
 * tests (test/integration/queue.test.ts on one server, test/e2e/redis-cluster.test.ts on a
 * cluster): pending tasks enqueued in a mixed order show queue positions 1..n in
 * priority-then-FIFO order with non-decreasing estimates, and a one-worker engine of
 * `concurrency` starts them in exactly that order. `root`: a taxonomy node the agents cover.
 */
import { expect } from "bun:test";
import type { TestContext } from "./app.ts";
import { startTestEngine, waitForStatus } from "./engine.ts";
import { postAgent } from "./fixtures.ts";
import { Dispatcher } from "../../src/queue/dispatch.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import type { Priority } from "../../src/core/tasks.ts";

const RANK: Record<Priority, number> = { high: 0, medium: 1, low: 2 };

export async function priorityOrderScenario(ctx: TestContext, options: { root: string; concurrency: number }) {
  const { root, concurrency } = options;
  const dispatcher = new Dispatcher(ctx.redis, queueKeys(ctx.config.redisPrefix));
  // Several agents (each may have one unforced pending refresh) plus forced refreshes of the same agent.
  const agents: string[] = [];
  for (let i = 0; i < 4; i++) agents.push((await postAgent(ctx, { name: `q${i}`, taxonomy_node_ids: [root] })).agent_id);
  const plan: { agent: number; priority: Priority; force: boolean }[] = [
    { agent: 0, priority: "low", force: false },
    { agent: 1, priority: "medium", force: false },
    { agent: 2, priority: "high", force: false },
    { agent: 0, priority: "high", force: true },
    { agent: 3, priority: "low", force: false },
    { agent: 1, priority: "high", force: true },
    { agent: 2, priority: "medium", force: true },
    { agent: 3, priority: "medium", force: true },
    { agent: 0, priority: "low", force: true },
  ];
  const created: { taskId: string; priority: Priority; seq: number }[] = [];
  for (const [seq, p] of plan.entries()) {
    const res = await ctx.request("POST", `agents/${agents[p.agent]}/coverage/refresh${p.force ? "?force=true" : ""}`, {
      body: { priority: p.priority },
    });
    expect(res.status).toBe(202);
    expect(res.body.priority).toBe(p.priority);
    created.push({ taskId: res.body.task_id, priority: p.priority, seq });
  }
  expect(new Set(created.map((c) => c.taskId)).size).toBe(plan.length);
  const expected = [...created].sort((a, b) => RANK[a.priority] - RANK[b.priority] || a.seq - b.seq);
  expect(await dispatcher.depths()).toEqual({ high: 3, medium: 3, low: 3 });

  // Positions and estimates, asked in position order.
  let previousEta = 0;
  for (const [i, t] of expected.entries()) {
    const res = await ctx.request("GET", `tasks/${t.taskId}`);
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("pending");
    expect(res.body.queue_position).toBe(i + 1);
    expect(typeof res.body.estimated_completion_at).toBe("string");
    const eta = Date.parse(res.body.estimated_completion_at);
    expect(Number.isNaN(eta)).toBe(false);
    expect(eta).toBeGreaterThan(Date.parse(res.body.created_at));
    expect(eta).toBeGreaterThanOrEqual(previousEta);
    previousEta = eta;
    // The agent-scoped view agrees.
    const scoped = await ctx.request("GET", `agents/${res.body.agent_id}/coverage/status/${t.taskId}`);
    expect(scoped.status).toBe(200);
    expect(scoped.body.queue_position).toBe(i + 1);
  }

  // Now one worker (the production worker script) takes them: one by one, or up to 8 at a
  // time (one priority-ordered pop, one claim, started in claim order).
  const engine = await startTestEngine(ctx, { workers: 1, concurrency });
  try {
    for (const t of created) expect(await waitForStatus(ctx, t.taskId, ["completed"])).toBe("completed");
    const started = engine.events.flatMap((e) => (e.type === "task_started" ? [e.taskId] : []));
    expect(started).toEqual(expected.map((t) => t.taskId));
    expect(await dispatcher.depths()).toEqual({ high: 0, medium: 0, low: 0 });
    // Terminal tasks have no position and no estimate.
    const done = await ctx.request("GET", `tasks/${expected[0]!.taskId}`);
    expect(done.body.queue_position).toBeNull();
    expect(done.body.estimated_completion_at).toBeNull();
  } finally {
    await engine.stop();
  }
}
