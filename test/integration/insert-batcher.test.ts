/**
 * Group commit of enqueues (src/tasks/insertBatcher.ts, insertTasks in src/db/tasks/enqueue.ts):
 * requests that arrive together are written by one statement, and each caller still gets
 * exactly what a statement of its own would have given it: its task, the agent's pending
 * refresh when deduplicated, or its own error.
 */
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { TaskInsertBatcher } from "../../src/tasks/insertBatcher.ts";
import { TaskService } from "../../src/tasks/service.ts";
import { openDatabase } from "../../src/db/client.ts";
import { isTransientDbError } from "../../src/db/errors.ts";

let ctx: TestContext;
let root: string;
const db = () => ctx.database.db;

beforeAll(async () => {
  ctx = await createTestContext();
  root = uuid();
  await postTaxonomy(ctx, "v1", [{ node_id: root, label: "root" }]);
});
afterAll(() => ctx.close());
beforeEach(async () => {
  await db().execute(sql`delete from background_tasks`);
});

const newAgent = async () => (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id as string;
const newTask = taskInput;
const rowCount = async () => (await db().execute<{ n: number }>(sql`select count(*)::int as n from background_tasks`))[0]!.n;

test("requests that arrive together are written by one statement, each caller getting its own task", async () => {
  const agentId = await newAgent();
  const batcher = new TaskInsertBatcher(db());
  const tasks = Array.from({ length: 50 }, (_, i) => newTask(agentId, { priority: i % 2 ? "high" : "low", webhookUrl: i === 7 ? "https://93.184.215.14/h" : null }));
  const outcomes = await Promise.all(tasks.map((t) => batcher.insert(t)));

  expect(batcher.stats).toEqual({ statements: 1, tasks: 50 });
  expect(outcomes.map((o) => [o.created, o.task.task_id, o.task.priority, o.task.status])).toEqual(tasks.map((t) => [true, t.taskId, t.priority, "pending"]));
  expect(outcomes[7]!.task.webhook_url).toBe("https://93.184.215.14/h");
  expect(outcomes[8]!.task.webhook_url).toBeNull();
  expect(await rowCount()).toBe(50);
});

test("a lone request is written at once, by a statement of its own", async () => {
  const batcher = new TaskInsertBatcher(db());
  const first = await batcher.insert(newTask(await newAgent()));
  const second = await batcher.insert(newTask(await newAgent()));
  expect([first.created, second.created]).toEqual([true, true]);
  expect(batcher.stats).toEqual({ statements: 2, tasks: 2 });
});

test("deduplicated requests in one batch: the first creates the agent's refresh, the later ones get it; a refresh pending before is returned as is", async () => {
  const [a, b, c] = [await newAgent(), await newAgent(), await newAgent()];
  const before = await insertTask(db(), newTask(a, { dedupe: true }));
  const batcher = new TaskInsertBatcher(db());
  const tasks = [
    newTask(a, { dedupe: true }),
    newTask(b, { dedupe: true }),
    newTask(b, { dedupe: true }),
    newTask(b, { dedupe: false }), // force: always a task of its own
    newTask(c, { dedupe: true }),
    newTask(a, { dedupe: true }),
  ];
  const outcomes = await Promise.all(tasks.map((t) => batcher.insert(t)));
  expect(batcher.stats.statements).toBe(1);
  expect(outcomes.map((o) => [o.created, o.task.task_id])).toEqual([
    [false, before.task.task_id],
    [true, tasks[1]!.taskId],
    [false, tasks[1]!.taskId],
    [true, tasks[3]!.taskId],
    [true, tasks[4]!.taskId],
    [false, before.task.task_id],
  ]);
  expect(await rowCount()).toBe(4);
});

test("in a batch, an unforced request gets its agent's oldest pending task whatever its flag: forced before the batch, or forced earlier in it", async () => {
  const [a, b] = [await newAgent(), await newAgent()];
  const forcedBefore = await insertTask(db(), newTask(a, { dedupe: false }));
  const batcher = new TaskInsertBatcher(db());
  const tasks = [
    newTask(a, { dedupe: true }),
    newTask(b, { dedupe: false }),
    newTask(b, { dedupe: true }),
    newTask(b, { dedupe: false }),
    newTask(a, { dedupe: false }),
    newTask(a, { dedupe: true }),
  ];
  const outcomes = await Promise.all(tasks.map((t) => batcher.insert(t)));
  expect(batcher.stats.statements).toBe(1);
  expect(outcomes.map((o) => [o.created, o.task.task_id])).toEqual([
    [false, forcedBefore.task.task_id],
    [true, tasks[1]!.taskId],
    [false, tasks[1]!.taskId],
    [true, tasks[3]!.taskId],
    [true, tasks[4]!.taskId],
    [false, forcedBefore.task.task_id],
  ]);
  expect(await rowCount()).toBe(4);
});

test("concurrent batches of unforced requests write one task per agent, or none when the agent had a forced one pending", async () => {
  const fresh = await Promise.all(Array.from({ length: 6 }, () => newAgent()));
  const withForced = await Promise.all(Array.from({ length: 6 }, () => newAgent()));
  const forced = new Map<string, string>();
  for (const agentId of withForced) forced.set(agentId, (await insertTask(db(), newTask(agentId, { dedupe: false }))).task.task_id);
  const agents = [...fresh, ...withForced];
  // Four batchers write at once on the pool's connections, each a batch with a request for every agent.
  const batchers = Array.from({ length: 4 }, () => new TaskInsertBatcher(db()));
  const outcomes = await Promise.all(
    batchers.flatMap((batcher) => agents.map(async (agentId) => ({ agentId, outcome: await batcher.insert(newTask(agentId, { dedupe: true })) }))),
  );
  expect(batchers.map((b) => b.stats.statements)).toEqual([1, 1, 1, 1]);
  for (const agentId of agents) {
    const mine = outcomes.filter((o) => o.agentId === agentId).map((o) => o.outcome);
    const ids = new Set(mine.map((o) => o.task.task_id));
    expect({ agentId, tasks: ids.size }).toEqual({ agentId, tasks: 1 });
    expect(mine.filter((o) => o.created)).toHaveLength(forced.has(agentId) ? 0 : 1);
    if (forced.has(agentId)) expect([...ids]).toEqual([forced.get(agentId)!]);
  }
  expect(await rowCount()).toBe(agents.length);
});

test("an unknown agent in a batch fails only its own request, with the foreign-key error", async () => {
  const agentId = await newAgent();
  const batcher = new TaskInsertBatcher(db());
  const tasks = [newTask(agentId), newTask(uuid()), newTask(agentId)];
  const settled = await Promise.allSettled(tasks.map((t) => batcher.insert(t)));
  expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  const error = (settled[1] as PromiseRejectedResult).reason as { code?: string; cause?: { code?: string } };
  expect(error.code ?? error.cause?.code).toBe("23503");
  expect(await rowCount()).toBe(2);
});

test("when the database connection is gone, every request of the batch fails with the connection error", async () => {
  const agentId = await newAgent();
  const closed = openDatabase(ctx.config.databaseUrl, { max: 1 });
  await closed.close();
  const batcher = new TaskInsertBatcher(closed.db);
  const settled = await Promise.allSettled([newTask(agentId), newTask(agentId), newTask(agentId)].map((t) => batcher.insert(t)));
  expect(batcher.stats).toEqual({ statements: 1, tasks: 3 });
  for (const s of settled) {
    expect(s.status).toBe("rejected");
    expect(isTransientDbError((s as PromiseRejectedResult).reason)).toBe(true);
  }
  expect(await rowCount()).toBe(0);
});

test("through the service, a burst of enqueues keeps first-in-first-out order in the queue", async () => {
  const service = new TaskService({ config: ctx.config, database: ctx.database, redis: ctx.redis, logger: ctx.logger });
  const agents = await Promise.all(Array.from({ length: 20 }, () => newAgent()));
  await ctx.redis.del(service.keys.queue("medium"));
  // Called in this order within one tick: one statement writes them all with one created_at.
  const results = await Promise.all(agents.map((agentId) => service.enqueueRefresh(agentId, { priority: "medium", webhookUrl: null, force: false })));
  expect(service.inserter.stats.statements).toBe(1);
  expect(new Set(results.map((r) => r.task.created_at)).size).toBe(1);
  const queued = await ctx.redis.zrange(service.keys.queue("medium"), "0", "-1");
  expect(queued).toEqual(results.map((r) => r.task.task_id));
});
