/** The settle batcher (src/tasks/settleBatcher.ts): a deadlock is retried once; other errors reach every caller of the batch. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { SettleBatcher } from "../../src/tasks/settleBatcher.ts";
import type { Db } from "../../src/db/client.ts";

let ctx: TestContext;
let agentId: string;
beforeAll(async () => {
  ctx = await createTestContext();
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "r" }]);
  agentId = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
});
afterAll(() => ctx.close());

/** A database whose first statement fails with `code`, then the real one. */
function failingFirst(code: string): () => Db {
  let calls = 0;
  const failing = { execute: () => Promise.reject(Object.assign(new Error(`fixture ${code}`), { code })) } as unknown as Db;
  return () => (calls++ === 0 ? failing : ctx.database.db);
}

async function runningTask() {
  const { task } = await insertTask(ctx.database.db, taskInput(agentId));
  return (await claimTask(ctx.database.db, task.task_id, "w", 60_000))!;
}

test("a deadlocked settle (40P01) wrote nothing and is run again once", async () => {
  const claim = await runningTask();
  const batcher = new SettleBatcher(failingFirst("40P01"));
  const settled = await batcher.settle({ taskId: claim.taskId, leaseToken: claim.leaseToken, ending: { kind: "failed", error: "x" } });
  expect(settled?.status).toBe("failed");
});

test("any other error fails the callers of that batch", async () => {
  const claim = await runningTask();
  const batcher = new SettleBatcher(failingFirst("ECONNRESET"));
  await expect(batcher.settle({ taskId: claim.taskId, leaseToken: claim.leaseToken, ending: { kind: "failed", error: "x" } })).rejects.toThrow("fixture ECONNRESET");
});
