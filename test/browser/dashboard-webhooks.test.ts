/**
 * A task's webhook on its page, in a real Chromium with no internet: the delivery and every
 * attempt, and the redeliver button, against the app served from the test process and a real
 * webhook sender posting to a real receiver on loopback.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { startReceiver, type Receiver } from "../helpers/receiver.ts";
import { WebhookSender } from "../../src/webhooks/sender.ts";
import { createLogger } from "../../src/logger.ts";
import { type SignedInDashboard, openSignedInDashboard, pageFaults, screenshot, useTimerImmediates } from "./support.ts";

let ctx: TestContext;
let dashboard: SignedInDashboard;
let page: Page;
let sender: WebhookSender;
let receiver: Receiver;
let immediates: { restore(): void } | undefined;
/** What the receiver answers: 400 (not retried: the delivery is dead at once) until told otherwise. */
let answer = 400;

beforeAll(async () => {
  immediates = useTimerImmediates();
  ctx = await createTestContext({ webhookAllowHttp: true, webhookAllowedHosts: ["127.0.0.1"] });
  receiver = startReceiver([], () => answer);
  sender = new WebhookSender({ config: ctx.config, database: ctx.database, logger: createLogger("silent"), sweepEveryMs: 200 });
  await sender.start();
  dashboard = await openSignedInDashboard(ctx);
  page = dashboard.page;
}, 30_000);

afterAll(async () => {
  await dashboard?.close();
  await sender?.stop();
  receiver?.stop();
  await ctx?.close();
  immediates?.restore();
});

describe("webhook of a task", () => {
  test("the page shows the dead delivery with its attempt, and redelivers it", async () => {
    const root = uuid();
    await postTaxonomy(ctx, "1", [{ node_id: root, label: "root" }]);
    await postDocument(ctx, { mappings: [{ node_id: root, version: "1", confidence: 0.9 }] });
    const agentId = (await postAgent(ctx, { name: "hooked", taxonomy_node_ids: [root] })).agent_id;
    // No engine runs: the task stays pending until it is cancelled, which ends it and sends its webhook.
    const created = await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { webhook_url: receiver.url("/hooks/agentq") } });
    expect(created.status).toBe(202);
    const taskId = created.body.task_id as string;
    expect((await ctx.request("DELETE", `tasks/${taskId}`)).status).toBe(204);
    await eventually(async () => ((await ctx.request("GET", `tasks/${taskId}/webhook`)).body?.status === "dead" ? true : undefined), 10_000, "a dead delivery");

    await page.goto(`/dashboard/tasks/${taskId}`);
    const card = page.locator(".card", { hasText: "Webhook" });
    await card.locator(".delivery-dead").waitFor();
    await expect(card.locator("tbody tr").count()).resolves.toBe(1);
    await expect(card.locator("tbody tr td").nth(2).textContent()).resolves.toBe("400");
    await screenshot(page, "dashboard-task-webhook");

    answer = 204;
    await card.locator('[data-action="redeliver"]').click();
    // The card follows the delivery until it is delivered.
    await card.locator(".delivery-delivered").waitFor({ timeout: 10_000 });
    await expect(card.locator("tbody tr").count()).resolves.toBe(2);
    const delivery = (await ctx.request("GET", `tasks/${taskId}/webhook`)).body;
    expect(delivery.status).toBe("delivered");
    expect(delivery.attempt_log.map((a: { status_code: number }) => a.status_code)).toEqual([400, 204]);
    // The same webhook-id both times (receivers dedupe on it).
    const ids = receiver.requests.map((r) => r.headers["webhook-id"]);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(ids[1]!);
    expect(pageFaults(dashboard.offline.errors)).toEqual([]);
    expect(dashboard.offline.external).toEqual([]);
  }, 30_000);
});
