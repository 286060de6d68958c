/**
 * The agent pages in a real Chromium with no internet, against the app served from the test
 * process, an engine, PostgreSQL and Redis: the list with coverage, the history chart with one
 * point per history row (and one more after a refresh from the page, with the priority
 * chosen), the gaps with their node labels, and the schedule editor.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, startTestEngine, type TestEngine } from "../helpers/engine.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { type SignedInDashboard, openSignedInDashboard, pageFaults, screenshot, useTimerImmediates } from "./support.ts";

let ctx: TestContext;
let engine: TestEngine;
let dashboard: SignedInDashboard;
let page: Page;
let immediates: { restore(): void } | undefined;
let agentId: string;
/** An agent with a fortnight of history, for the README's picture. */
let pictured: string;
const nodes = { root: uuid(), law: uuid(), tax: uuid(), audit: uuid() };

async function historyRows(id: string): Promise<number> {
  const [row] = await ctx.database.db.execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where agent_id = ${id}`);
  return row!.n;
}

const chartPoints = async () => Number(await page.locator(".chart").getAttribute("data-points"));

beforeAll(async () => {
  immediates = useTimerImmediates();
  ctx = await createTestContext(FAST_ENGINE);
  await postTaxonomy(ctx, "2024.1", [
    { node_id: nodes.root, label: "Finance" },
    { node_id: nodes.law, label: "Company law", parent_ids: [nodes.root] },
    { node_id: nodes.tax, label: "Tax", parent_ids: [nodes.root] },
    { node_id: nodes.audit, label: "Auditing", parent_ids: [nodes.root] },
  ]);
  agentId = (await postAgent(ctx, { name: "Finance analyst", taxonomy_node_ids: [nodes.root], taxonomy_version: "2024.1" })).agent_id;
  pictured = (await postAgent(ctx, { name: "Tax helper", taxonomy_node_ids: [nodes.root], taxonomy_version: "2024.1" })).agent_id;
  // Seven measurements, the coverage growing as documents arrive: seven history rows.
  for (let i = 0; i < 7; i++) {
    await postDocument(ctx, { title: `memo ${i}`, chunks: ["a", "b"], mappings: [{ node_id: i % 2 ? nodes.law : nodes.root, version: "2024.1", confidence: 0.9 }] });
    const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh?background=false`);
    if (res.status !== 200) throw new Error(`refresh: ${res.status} ${res.text}`);
  }
  engine = await startTestEngine(ctx, { workers: 1, concurrency: 2 });
  dashboard = await openSignedInDashboard(ctx, "/dashboard/agents");
  page = dashboard.page;
}, 30_000);

afterAll(async () => {
  await dashboard?.close();
  await engine?.stop();
  await ctx?.close();
  immediates?.restore();
});

describe("agent pages", () => {
  test("the list shows every agent with its coverage, and links to each", async () => {
    const row = page.locator(`tr[data-agent-id="${agentId}"]`);
    await row.waitFor();
    await expect(page.locator("tbody tr").count()).resolves.toBe(2);
    const [agent] = await ctx.database.db.execute<{ coverage_percent: number }>(sql`select coverage_percent from agents where agent_id = ${agentId}`);
    await expect(row.locator(".coverage-label").textContent()).resolves.toBe(`${Number(agent!.coverage_percent).toFixed(1)}%`);
    await screenshot(page, "dashboard-agents");
    await row.getByRole("link", { name: "Finance analyst" }).click();
    await page.waitForURL((url) => url.pathname === `/dashboard/agents/${agentId}`);
  }, 30_000);

  test("the history chart draws one point per history row, and one more after a refresh with the chosen priority", async () => {
    await page.goto(`/dashboard/agents/${agentId}`);
    await page.locator(".chart[data-points]").waitFor();
    const rows = await historyRows(agentId);
    expect(rows).toBe(7);
    expect(await chartPoints()).toBe(rows);
    expect(await page.locator(".chart canvas").count()).toBe(1);

    await page.locator('select[name="refresh-priority"]').selectOption("high");
    await page.locator('[data-action="refresh"]').click();
    await page.getByRole("status").filter({ hasText: "Queued" }).waitFor();
    const [task] = await ctx.database.db.execute<{ task_id: string; priority: string }>(
      sql`select task_id, priority from background_tasks where agent_id = ${agentId} order by created_at desc limit 1`,
    );
    expect(task!.priority).toBe("high");
    // The task completes in the engine; its history row arrives and the chart redraws live.
    await eventually(async () => ((await chartPoints()) === 8 ? true : undefined), 15_000, "the chart's eighth point");
    expect(await historyRows(agentId)).toBe(8);
    await page.locator(`tr[data-task-id="${task!.task_id}"] [data-status="completed"]`).waitFor({ timeout: 5000 });
  }, 30_000);

  test("an agent with a fortnight of history, a schedule and gaps (the README's picture)", async () => {
    // A measurement a day for two weeks, written directly: test data for the picture, not a behaviour under test.
    const measured = await ctx.request("POST", `agents/${pictured}/coverage/refresh?background=false`);
    expect(measured.status).toBe(200);
    const now = measured.body.overall_coverage as number;
    const day = 24 * 3600 * 1000;
    for (let i = 1; i <= 14; i++) {
      const coverage = Math.round(now * (1 - i / 16) * 100) / 100;
      await ctx.database.db.execute(
        sql`insert into coverage_history (agent_id, timestamp, overall_coverage, total_documents, total_chunks, version)
            values (${pictured}, ${new Date(Date.now() - i * day).toISOString()}, ${coverage}, ${Math.max(0, 7 - Math.ceil(i / 2))}, ${Math.max(0, 14 - i)}, '2024.1')`,
      );
    }
    expect((await ctx.request("PUT", `agents/${pictured}/schedule`, { body: { cron: "0 3 * * *", timezone: "Europe/Paris", priority: "low" } })).status).toBe(201);
    await page.goto(`/dashboard/agents/${pictured}`);
    await page.locator(".chart[data-points]").waitFor();
    expect(await chartPoints()).toBe(await historyRows(pictured));
    await page.locator(".gaps-table tbody tr").first().waitFor();
    await page.locator('[data-schedule="next"]').waitFor();
    await screenshot(page, "dashboard-agent");
    await screenshot(page, "dashboard-agent-full", { fullPage: true });
  }, 30_000);

  test("the gaps name their nodes", async () => {
    await page.goto(`/dashboard/agents/${agentId}`);
    const gaps = page.locator(".gaps-table tbody tr");
    await gaps.first().waitFor();
    const res = await ctx.request("GET", `agents/${agentId}/gaps?threshold=0.5`);
    expect(await gaps.count()).toBe(res.body.gaps.length);
    const labels = await page.locator(".gaps-table tbody tr td:first-child").allTextContents();
    expect(labels.some((l) => l.startsWith("Auditing"))).toBe(true);
    await page.locator('select[name="threshold"]').selectOption("0.25");
    await eventually(async () => {
      const n = (await ctx.request("GET", `agents/${agentId}/gaps?threshold=0.25`)).body.gaps.length;
      return (await gaps.count()) === n || (n === 0 && (await page.locator(".card", { hasText: "Gaps" }).locator(".empty").count()) === 1) ? true : undefined;
    }, 5000, "the gaps at 25%");
  }, 30_000);

  test("the schedule editor creates, changes and removes the agent's schedule", async () => {
    await page.goto(`/dashboard/agents/${agentId}`);
    const card = page.locator(".card", { hasText: "Schedule" });
    await card.getByText("No schedule").waitFor();
    await card.locator('input[name="every_amount"]').fill("2");
    await card.locator('select[name="every_unit"]').selectOption("hours");
    await card.locator('select[name="schedule-priority"]').selectOption("low");
    await card.locator('[data-action="save-schedule"]').click();
    await card.getByRole("status").filter({ hasText: "Saved. Next run" }).waitFor();
    let schedule = (await ctx.request("GET", `agents/${agentId}/schedule`)).body;
    expect(schedule).toMatchObject({ every_seconds: 7200, cron: null, priority: "low", enabled: true });
    await expect(card.locator('[data-schedule="runs"]').textContent()).resolves.toBe("every 2 hours");

    await card.locator('input[name="kind"][value="cron"]').check();
    await card.locator('input[name="cron"]').fill("30 4 * * 1-5");
    await card.locator('input[name="timezone"]').fill("Europe/Paris");
    await card.locator('[data-action="save-schedule"]').click();
    await card.locator('[data-schedule="runs"]', { hasText: "cron" }).waitFor();
    await expect(card.locator('[data-schedule="runs"]').textContent()).resolves.toBe("cron 30 4 * * 1-5 (Europe/Paris)");
    schedule = (await ctx.request("GET", `agents/${agentId}/schedule`)).body;
    expect(schedule).toMatchObject({ cron: "30 4 * * 1-5", every_seconds: null, timezone: "Europe/Paris" });

    // A bad expression is refused with the API's message; the stored schedule stays.
    await card.locator('input[name="cron"]').fill("61 * * * *");
    await card.locator('[data-action="save-schedule"]').click();
    await card.locator(".flash-error").waitFor();
    expect((await ctx.request("GET", `agents/${agentId}/schedule`)).body.cron).toBe("30 4 * * 1-5");

    await card.locator('[data-action="delete-schedule"]').click();
    await card.getByText("No schedule").waitFor();
    expect((await ctx.request("GET", `agents/${agentId}/schedule`)).status).toBe(404);
    expect(pageFaults(dashboard.offline.errors)).toEqual([]);
    expect(dashboard.offline.external).toEqual([]);
  }, 30_000);
});
