/**
 * AGENTQ_DASHBOARD_READ_ONLY in a real Chromium: every page shows no action (no button, no
 * selection box, no editor), and an action forged from the page itself, with the session's
 * own CSRF token, is refused with 403 and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { taskStatus } from "../helpers/engine.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { type SignedInDashboard, openSignedInDashboard, pageFaults, screenshot, useTimerImmediates } from "./support.ts";

let ctx: TestContext;
let dashboard: SignedInDashboard;
let page: Page;
let immediates: { restore(): void } | undefined;
let agentId: string;
let taskId: string;

beforeAll(async () => {
  immediates = useTimerImmediates();
  // No engine: the task stays pending, so cancel and retry would both be on offer if allowed.
  ctx = await createTestContext({ dashboardReadOnly: true });
  const root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
  await postDocument(ctx, { mappings: [{ node_id: root, version: "1", confidence: 0.9 }] });
  agentId = (await postAgent(ctx, { name: "watched", taxonomy_node_ids: [root] })).agent_id;
  await ctx.request("POST", `agents/${agentId}/coverage/refresh?background=false`);
  taskId = (await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: {} })).body.task_id;
  dashboard = await openSignedInDashboard(ctx);
  page = dashboard.page;
}, 30_000);

afterAll(async () => {
  await dashboard?.close();
  await ctx?.close();
  immediates?.restore();
});

/** Controls that would change something: buttons, selection boxes, form fields (the sign-out form aside). */
async function actionControls(p: Page): Promise<number> {
  return p.locator("main button, main input, main select:not([name='threshold'])").count();
}

describe("read-only dashboard", () => {
  test("no page shows an action", async () => {
    await expect(page.locator(".badge.read-only").textContent()).resolves.toBe("read-only");
    // Each page with what shows that every card has its data (the schedule, the webhook, the gaps).
    const pages: [string, string[]][] = [
      ["/dashboard", ['[data-stat="pending"]', ".card >> text=Newest tasks"]],
      ["/dashboard/tasks", [`tr[data-task-id="${taskId}"]`]],
      [`/dashboard/tasks/${taskId}`, [".timeline li", "text=This task has no webhook."]],
      ["/dashboard/agents", [`tr[data-agent-id="${agentId}"]`]],
      [`/dashboard/agents/${agentId}`, [".chart[data-points]", "text=No schedule", `tr[data-task-id="${taskId}"]`, ".card >> text=Gaps"]],
    ];
    for (const [path, ready] of pages) {
      await page.goto(path);
      for (const selector of ready) await page.locator(selector).first().waitFor();
      const filters = path === "/dashboard/tasks" || path === "/dashboard/agents" ? await page.locator(".filters input, .filters select, .filters button, .pager button").count() : 0;
      expect({ path, actions: (await actionControls(page)) - filters }).toEqual({ path, actions: 0 });
      expect({ path, dataActions: await page.locator("[data-action]").count() }).toEqual({ path, dataActions: 0 });
      if (path === "/dashboard/tasks") await screenshot(page, "dashboard-read-only");
    }
    expect(pageFaults(dashboard.offline.errors)).toEqual([]);
    expect(dashboard.offline.external).toEqual([]);
  }, 30_000);

  test("an action forged from the page, with its own CSRF token, is refused with 403 and changes nothing", async () => {
    await page.goto(`/dashboard/tasks/${taskId}`);
    await page.locator(".timeline li").first().waitFor();
    const forged = (await page.evaluate(`(async () => {
      const token = document.querySelector('meta[name="agentq-csrf-token"]').content;
      const send = (method, path, body) => fetch(path, { method, headers: { 'x-csrf-token': token, 'content-type': 'application/json' }, body: body && JSON.stringify(body) })
        .then(async (r) => ({ status: r.status, body: await r.json() }));
      return [
        await send('DELETE', '/api/v1/tasks/${taskId}'),
        await send('POST', '/api/v1/agents/${agentId}/coverage/refresh', { priority: 'high' }),
        await send('PUT', '/api/v1/agents/${agentId}/schedule', { every_seconds: 60 }),
      ];
    })()`)) as { status: number; body: { error: { code: string; message: string } } }[];
    for (const answer of forged) {
      expect(answer.status).toBe(403);
      expect(answer.body.error.code).toBe("forbidden");
      expect(answer.body.error.message).toContain("read-only");
    }
    expect(await taskStatus(ctx, taskId)).toBe("pending");
    expect((await ctx.request("GET", `tasks?agent_id=${agentId}`)).body.tasks).toHaveLength(1);
    expect((await ctx.request("GET", `agents/${agentId}/schedule`)).status).toBe(404);
  }, 30_000);
});
