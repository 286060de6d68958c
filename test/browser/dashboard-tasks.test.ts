/**
 * The task pages in a real Chromium, against the real API, an engine (supervisor and worker
 * threads running the scripted fixture handler) and real PostgreSQL and Redis: a running
 * task's progress bar moves without a reload, cancelling from the UI ends tasks `cancelled`,
 * retrying from the UI creates new tasks that complete, and the overview counts the queue.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually, FAST_ENGINE, startTestEngine, taskStatus, waitForStatus, type TestEngine } from "../helpers/engine.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { FIXTURE_WORKERS } from "../fixtures/workers/index.ts";
import { type SignedInDashboard, openSignedInDashboard, pageFaults, screenshot, useTimerImmediates } from "./support.ts";

let ctx: TestContext;
let engine: TestEngine;
let dashboard: SignedInDashboard;
let page: Page;
let root: string;

/** An agent whose tasks the scripted worker runs as `fixture` says (slow with progress, throws, ...). */
async function agent(name: string, fixture?: { mode: string; ms?: number }) {
  return (await postAgent(ctx, { name, taxonomy_node_ids: [root], features_config: fixture ? { fixture } : {} })).agent_id;
}

async function enqueue(agentId: string, priority = "medium"): Promise<string> {
  const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh?force=true`, { body: { priority } });
  if (res.status !== 202) throw new Error(`enqueue: ${res.status} ${res.text}`);
  return res.body.task_id as string;
}

const progressOf = async (locator: ReturnType<Page["locator"]>) => Number(await locator.getAttribute("aria-valuenow"));

let immediates: { restore(): void } | undefined;

beforeAll(async () => {
  immediates = useTimerImmediates();
  ctx = await createTestContext(FAST_ENGINE);
  root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
  await postDocument(ctx, { mappings: [{ node_id: root, version: "1", confidence: 0.9 }] });
  engine = await startTestEngine(ctx, { workers: 2, concurrency: 4, workerUrl: FIXTURE_WORKERS.scripted });
  dashboard = await openSignedInDashboard(ctx);
  page = dashboard.page;
}, 30_000);

afterAll(async () => {
  await dashboard?.close();
  await engine?.stop();
  await ctx?.close();
  immediates?.restore();
});

describe("task pages", () => {
  test("a running task's progress bar moves on its page and in the list, without a reload", async () => {
    const slow = await agent("slow analyst", { mode: "slow", ms: 4000 });
    const taskId = await enqueue(slow, "high");
    await page.goto(`/dashboard/tasks/${taskId}`);
    // A reload would drop this mark.
    await page.evaluate("window.__noReload = true");
    const bar = page.locator(".card", { hasText: "Progress" }).getByRole("progressbar");
    await bar.waitFor();
    const seen = new Set<number>();
    await eventually(async () => {
      seen.add(await progressOf(bar));
      return seen.size >= 3 ? true : undefined;
    }, 10_000, "three different progress values on the task page");
    const values = [...seen];
    expect(values).toEqual([...values].sort((a, b) => a - b));
    await screenshot(page, "dashboard-task-running");

    await page.getByRole("link", { name: "Tasks", exact: true }).click();
    const row = page.locator(`tr[data-task-id="${taskId}"]`);
    const before = await progressOf(row.getByRole("progressbar"));
    await eventually(async () => ((await progressOf(row.getByRole("progressbar"))) > before ? true : undefined), 10_000, "the list's bar to move");
    // It ends completed on the page, still without a reload.
    await row.locator('[data-status="completed"]').waitFor({ timeout: 10_000 });
    expect(await progressOf(row.getByRole("progressbar"))).toBe(100);
    expect(await page.evaluate("window.__noReload")).toBe(true);
    expect(await taskStatus(ctx, taskId)).toBe("completed");
  }, 30_000);

  test("a retried task's timeline shows each earlier attempt's start, end and reason, read from the task (not from live events)", async () => {
    const flaky = await agent("flaky connection", { mode: "dbLost" });
    const taskId = await enqueue(flaky);
    // Opened after it ended: the page saw none of its events, so all of it comes from GET /tasks/{id}.
    expect(await waitForStatus(ctx, taskId, ["failed"])).toBe("failed");
    await page.goto(`/dashboard/tasks/${taskId}`);
    const items = page.locator(".timeline li");
    await page.locator(".timeline li.timeline-ended").waitFor();
    const labels = await items.locator(".timeline-label").allTextContents();
    expect(labels).toEqual(["Created", "Attempt 1 started", "Attempt 1 ended", "Attempt 2 started", "Attempt 2 ended", "Attempt 3 started", "Ended failed"]);
    const retried = page.locator(".timeline li.timeline-retried");
    expect(await retried.count()).toBe(2);
    for (const detail of await retried.locator(".timeline-detail").allTextContents())
      expect(detail).toContain("database connection lost: fixture: connection lost");
    // Every step has its time: nothing "not recorded".
    expect(await page.locator(".timeline", { hasText: "not recorded" }).count()).toBe(0);
    expect(await items.locator(".timeline-at").allTextContents()).not.toContain("–");
  }, 30_000);

  test("cancelling selected tasks from the list ends them cancelled (a running one and a pending one)", async () => {
    const slow = await agent("long runner", { mode: "slow", ms: 20_000 });
    const running = await enqueue(slow);
    await waitForStatus(ctx, running, ["running"]);
    // A pending one: an agent whose tasks cannot start yet (every slot is busy with slow ones).
    const blockers = await Promise.all(Array.from({ length: 7 }, () => enqueue(slow)));
    const waiting = await enqueue(slow, "low");
    await page.goto("/dashboard/tasks");
    await page.locator(`tr[data-task-id="${waiting}"]`).waitFor();
    expect(await taskStatus(ctx, waiting)).toBe("pending");

    await page.getByRole("checkbox", { name: `Select ${running}` }).check();
    await page.getByRole("checkbox", { name: `Select ${waiting}` }).check();
    await screenshot(page, "dashboard-tasks");
    await page.locator('[data-action="cancel-selected"]').click();
    await expect(page.getByRole("status").textContent()).resolves.toBe("Cancelled 2 tasks.");
    expect(await waitForStatus(ctx, running, ["cancelled"], 5000)).toBe("cancelled");
    expect(await taskStatus(ctx, waiting)).toBe("cancelled");
    await page.locator(`tr[data-task-id="${running}"] [data-status="cancelled"]`).waitFor({ timeout: 5000 });
    await page.locator(`tr[data-task-id="${waiting}"] [data-status="cancelled"]`).waitFor({ timeout: 5000 });

    // And from a task's own page.
    const blocker = blockers[0]!;
    await page.goto(`/dashboard/tasks/${blocker}`);
    await page.locator('[data-action="cancel"]').click();
    await page.locator('.task-head [data-status="cancelled"]').waitFor({ timeout: 5000 });
    expect(await waitForStatus(ctx, blocker, ["cancelled"], 5000)).toBe("cancelled");
    // Free the slots for the next tests.
    for (const id of blockers) await ctx.request("DELETE", `tasks/${id}`);
  }, 30_000);

  test("retrying from the UI creates new tasks, which complete", async () => {
    const flaky = await agent("flaky", { mode: "throws" });
    const failedA = await enqueue(flaky);
    const failedB = await enqueue(flaky);
    const failedC = await enqueue(flaky);
    for (const id of [failedA, failedB, failedC]) await waitForStatus(ctx, id, ["failed"]);
    // The fault is fixed (the agent's tasks now compute real coverage); then retried.
    expect((await ctx.request("PATCH", `agents/${flaky}`, { body: { features_config: {} } })).status).toBe(200);

    await page.goto(`/dashboard/tasks/${failedA}`);
    await expect(page.locator(".error-text").textContent()).resolves.toBe("fixture: task code failed");
    await screenshot(page, "dashboard-task-failed");
    await page.locator('[data-action="retry"]').click();
    await page.waitForURL((url) => url.pathname !== `/dashboard/tasks/${failedA}`);
    const retryId = decodeURIComponent(new URL(page.url()).pathname.split("/").at(-1)!);
    await page.locator('.task-head [data-status="completed"]').waitFor({ timeout: 10_000 });
    await expect(page.locator(".task-head").textContent()).resolves.toContain("retry of");
    const [row] = await ctx.database.db.execute<{ status: string; retry_of: string }>(
      sql`select status, retry_of from background_tasks where task_id = ${retryId}`,
    );
    expect(row).toEqual({ status: "completed", retry_of: failedA });

    // Several at once, from the list.
    await page.goto(`/dashboard/tasks?agent_id=${flaky}&status=failed`);
    await page.locator(`tr[data-task-id="${failedB}"]`).waitFor();
    await page.getByRole("checkbox", { name: "Select every task on this page" }).check();
    // failedA was retried already: the list says what could not be retried.
    await page.locator('[data-action="retry-selected"]').click();
    const flash = page.locator(".flash");
    await flash.waitFor();
    expect(await flash.textContent()).toMatch(/^Retried 2 of 3\. /);
    const retries = await eventually(async () => {
      const rows = await ctx.database.db.execute<{ task_id: string; status: string; retry_of: string }>(
        sql`select task_id, status, retry_of from background_tasks where retry_of in (${failedB}, ${failedC}) order by retry_of`,
      );
      return rows.length === 2 && rows.every((r) => r.status === "completed") ? rows : undefined;
    }, 10_000, "both retries to complete");
    expect(retries.map((r) => r.retry_of).sort()).toEqual([failedB, failedC].sort());
  }, 30_000);

  test("the overview shows the queue by priority, running tasks, the last hour and the oldest pending task, live", async () => {
    const slow = await agent("overview runner", { mode: "slow", ms: 15_000 });
    const running = await Promise.all(Array.from({ length: 8 }, () => enqueue(slow)));
    for (const id of running) await waitForStatus(ctx, id, ["running"]);
    await page.goto("/dashboard");
    await page.locator('[data-stat="running"] .stat-value').waitFor();
    await eventually(async () => ((await page.locator('[data-stat="running"] .stat-value').textContent()) === "8" ? true : undefined), 5000, "8 running");
    // New pending tasks appear without a reload: every slot is busy, so they wait.
    const pending = [await enqueue(slow, "high"), await enqueue(slow, "low"), await enqueue(slow, "low")];
    const depth = (priority: string) => page.locator(`tr[data-priority="${priority}"] [data-depth="pending"]`);
    await eventually(async () => ((await depth("low").textContent()) === "2" ? true : undefined), 5000, "2 low pending");
    expect(await depth("high").textContent()).toBe("1");
    expect(await page.locator('[data-stat="pending"] .stat-value').textContent()).toBe("3");
    expect(await page.locator('[data-stat="oldest-pending"] .stat-value').textContent()).toMatch(/ (ms|s)$/);
    // The engine's 2 threads x 4 tasks each, from its heartbeat.
    expect(await page.locator('[data-stat="workers"] .stat-value').textContent()).toBe("8");
    expect(await page.locator('[data-stat="workers"] .stat-hint').textContent()).toBe("task slots on 1 supervisor");
    const finished = Number(await page.locator('[data-stat="throughput"] .stat-value').textContent());
    expect(finished).toBeGreaterThanOrEqual(5);
    expect(await page.locator('[data-stat="failure-rate"] .stat-value').textContent()).toMatch(/%$/);
    await screenshot(page, "dashboard-overview");
    for (const id of [...running, ...pending]) await ctx.request("DELETE", `tasks/${id}`);
    expect(pageFaults(dashboard.offline.errors)).toEqual([]);
    expect(dashboard.offline.external).toEqual([]);
  }, 30_000);
});
