/**
 * The step-by-step coverage computation that background tasks run must agree
 * with the one-statement meter, report rising progress, and stop when aborted.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { measureCoverage } from "../../src/coverage/meter.ts";
import { measureCoverageInSteps, MAX_BATCHES } from "../../src/coverage/stepwise.ts";
import { requireAgent, type AgentView } from "../../src/db/agents.ts";
import { CoverageBatcher, measureSmallScopes } from "../../src/coverage/batchMeter.ts";
import { coverageRefresh } from "../../workers/handlers/coverageRefresh.ts";
import { redisTargetOf } from "../../src/queue/connection.ts";

let ctx: TestContext;
let agent: AgentView;
let children: string[];
const settings = { confidenceThreshold: 0.7, defaultTargetDocuments: 3 };

beforeAll(async () => {
  ctx = await createTestContext();
  // A root with 40 children and a shared grandchild: more nodes than MAX_BATCHES batches.
  const root = uuid();
  children = Array.from({ length: 40 }, () => uuid());
  const shared = uuid();
  await postTaxonomy(ctx, "v1", [
    { node_id: root, label: "root" },
    ...children.map((c, i) => ({ node_id: c, label: `c${i}`, parent_ids: [root] })),
    { node_id: shared, label: "shared", parent_ids: [children[0]!, children[1]!] },
  ]);
  for (let i = 0; i < 30; i++)
    await postDocument(ctx, {
      chunks: Array.from({ length: (i % 3) + 1 }, (_, k) => `text ${i} ${k}`),
      mappings: [
        { node_id: children[i % 40]!, version: "v1", confidence: 0.9 },
        { node_id: shared, version: "v1", confidence: i % 2 === 0 ? 0.7 : 0.69 },
      ],
    });
  const { agent_id } = await postAgent(ctx, { taxonomy_node_ids: [root], coverage_targets: { [shared]: 20 } });
  agent = await requireAgent(ctx.database.db, agent_id);
});
afterAll(() => ctx.close());

const withoutTime = <T extends { calculated_at: string }>(r: T) => ({ ...r, calculated_at: "" });

test("computes exactly what the one-statement meter computes", async () => {
  const stepwise = await measureCoverageInSteps(ctx.database.db, agent, settings);
  const oneShot = await measureCoverage(ctx.database.db, agent, settings);
  expect(withoutTime(stepwise)).toEqual(withoutTime(oneShot));
  expect(Object.keys(stepwise.node_coverage)).toHaveLength(42);
});

test("reports strictly rising progress in a bounded number of steps", async () => {
  const seen: number[] = [];
  await measureCoverageInSteps(ctx.database.db, agent, settings, { onProgress: (p) => void seen.push(p) });
  expect(seen.length).toBeLessThanOrEqual(MAX_BATCHES + 2);
  expect(seen.length).toBeGreaterThan(3);
  for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
  expect(seen[seen.length - 1]).toBeLessThan(100);
});

test("stops at the next step once its signal is aborted", async () => {
  const controller = new AbortController();
  const seen: number[] = [];
  const run = measureCoverageInSteps(ctx.database.db, agent, settings, {
    signal: controller.signal,
    onProgress: (p) => {
      seen.push(p);
      if (seen.length === 2) controller.abort("cancelled");
    },
  });
  await expect(run).rejects.toThrow("cancelled");
  expect(seen).toHaveLength(2);
});

test("the coverage_refresh handler measures the task's agent, step by step when its scope is large", async () => {
  const progress: number[] = [];
  const batcher = new CoverageBatcher(() => ctx.database.db, settings);
  const signal = new AbortController().signal;
  const result = await coverageRefresh({
    taskId: "t",
    agentId: agent.agent_id,
    agent,
    attempt: 1,
    database: ctx.database,
    settings: {
      databaseUrl: ctx.config.databaseUrl,
      redis: redisTargetOf(ctx.config),
      redisPrefix: ctx.config.redisPrefix,
      leaseMs: 1000,
      concurrency: 1,
      claimCooldownMs: 0,
    popTimeoutSeconds: 1,
      ...settings,
    },
    signal,
    progress: async (p) => void progress.push(p),
    measureSmallScope: () => batcher.measure(agent, signal),
  });
  expect(withoutTime(result)).toEqual(withoutTime(await measureCoverage(ctx.database.db, agent, settings)));
  // The root's scope is large: the batched path declined it, the stepwise one reported progress.
  expect(batcher.stats.items).toBe(1);
  expect(progress.length).toBeGreaterThan(0);
});

test("the batched meter measures many small scopes in one statement, exactly as the one-statement meter does", async () => {
  const scopes = [
    { ...agent, taxonomy_node_ids: children.slice(0, 3) },
    { ...agent, taxonomy_node_ids: [children[0]!] },
    { ...agent, taxonomy_node_ids: children.slice(0, 3) }, // the same scope twice in one batch
    agent, // large: declined
    { ...agent, taxonomy_node_ids: [uuid()] }, // a node without documents or children
  ];
  const batched = await measureSmallScopes(ctx.database.db, scopes, settings);
  for (const [i, scope] of scopes.entries()) {
    if (scope === agent) expect(batched[i]).toBeNull();
    else expect(withoutTime(batched[i]!)).toEqual(withoutTime(await measureCoverage(ctx.database.db, scope, settings)));
  }
  // Asked for together while a statement is in flight: one statement for the rest.
  const batcher = new CoverageBatcher(() => ctx.database.db, settings);
  const all = await Promise.all(scopes.map((s) => batcher.measure(s)));
  expect(all.map((r) => (r ? withoutTime(r) : null))).toEqual(batched.map((r) => (r ? withoutTime(r) : null)));
  expect(batcher.stats).toEqual({ writes: 1, items: scopes.length });
});

test("a task aborted while its batched measurement runs stops waiting at once; the statement is cancelled only when every waiter is gone", async () => {
  const batcher = new CoverageBatcher(() => ctx.database.db, settings);
  const a = new AbortController();
  const b = new AbortController();
  const small = { ...agent, taxonomy_node_ids: [children[0]!] };
  const first = batcher.measure(small, a.signal);
  const second = batcher.measure(small, b.signal);
  a.abort("cancelled");
  await expect(first).rejects.toBe("cancelled");
  expect(withoutTime((await second)!)).toEqual(withoutTime(await measureCoverage(ctx.database.db, small, settings)));
  const c = new AbortController();
  c.abort("timeout");
  expect(() => batcher.measure(small, c.signal)).toThrow();
});

test("a small scope is measured in one statement after the scope walk, with the same result", async () => {
  // Three children (four nodes with the shared grandchild): never the root, whose scope is large.
  const small = { ...agent, taxonomy_node_ids: children.slice(0, 3) };
  const seen: number[] = [];
  const stepwise = await measureCoverageInSteps(ctx.database.db, small, settings, { onProgress: (p) => void seen.push(p) });
  expect(withoutTime(stepwise)).toEqual(withoutTime(await measureCoverage(ctx.database.db, small, settings)));
  expect(seen).toEqual([10, 95]);
});
