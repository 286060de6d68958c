import { afterAll, beforeAll, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { FAST_ENGINE, startTestEngine, waitForStatus } from "../helpers/engine.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";

let ctx: TestContext;
let agentFor: (mode?: string, ms?: number) => Promise<string>;
beforeAll(async () => {
  ctx = await createTestContext(FAST_ENGINE);
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "r" }]);
  agentFor = async (mode, ms) =>
    (await postAgent(ctx, { taxonomy_node_ids: [root], features_config: mode ? { fixture: { mode, ms } } : {} })).agent_id;
});
afterAll(() => ctx.close());

const refresh = async (agentId: string, priority = "medium") => {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh?force=true`, { body: { priority } });
  expect(res.status).toBe(202);
  return res.body.task_id as string;
};

test("smoke: completes, throws, crash retries then fails, hang is terminated", async () => {
  const engine = await startTestEngine(ctx, { workers: 2, workerUrl: FIXTURE_WORKERS.scripted });
  try {
    const ok = await refresh(await agentFor());
    const bad = await refresh(await agentFor("throws"));
    const crash = await refresh(await agentFor("exits"));
    expect(await waitForStatus(ctx, ok, ["completed"])).toBe("completed");
    expect(await waitForStatus(ctx, bad, ["failed"])).toBe("failed");
    expect(await waitForStatus(ctx, crash, ["failed"])).toBe("failed");
    const t = await ctx.request("GET", `tasks/${crash}`);
    expect(t.body.attempt).toBe(3);
    const slow = await refresh(await agentFor("slow", 5000));
    await waitForStatus(ctx, slow, ["running"]);
    const del = await ctx.request("DELETE", `tasks/${slow}`);
    expect(del.status).toBe(204);
    expect(await waitForStatus(ctx, slow, ["cancelled"], 2000)).toBe("cancelled");
    const hang = await refresh(await agentFor("ignoresAbort"));
    await waitForStatus(ctx, hang, ["running"]);
    await ctx.request("DELETE", `tasks/${hang}`);
    expect(await waitForStatus(ctx, hang, ["cancelled"], 3000)).toBe("cancelled");
    await engine.waitForEvent((e) => e.type === "worker_replaced");
  } finally {
    await engine.stop();
  }
}, 60_000);
