/**
 * Webhook delivery against a real receiver on loopback, real PostgreSQL (the
 * outbox and its trigger) and the real sender: signatures, retries, dead
 * deliveries and redelivery, timeouts, redirects, Retry-After, URL safety at
 * request and delivery time, and a sender killed mid-delivery.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { sql } from "drizzle-orm";
import { Webhook } from "standardwebhooks";
import { createTestContext, TEST_WEBHOOK_SECRET, type TestContext } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, taskInput, uuid } from "../helpers/fixtures.ts";
import { eventually, spawnSupervisor, startTestEngine } from "../helpers/engine.ts";
import { startReceiver, type Receiver, type Reply } from "../helpers/receiver.ts";
import { WebhookSender } from "../../src/webhooks/sender.ts";
import { secretKey } from "../../src/webhooks/signing.ts";
import { createMetrics, type Metrics } from "../../src/metrics/registry.ts";
import { createLogger } from "../../src/logger.ts";
import { getDelivery, type DeliveryView } from "../../src/db/webhooks.ts";
import { claimTask } from "../../src/db/tasks/claims.ts";
import { settleTask } from "../../src/db/tasks/settle.ts";
import { insertTask } from "../../src/db/tasks/enqueue.ts";
import { newTaskId } from "../../src/core/tasks.ts";
import type { Config } from "../../src/config.ts";
import type { Resolver } from "../../src/webhooks/urlSafety.ts";

const WEBHOOKS: Partial<Config> = {
  webhookAllowHttp: true,
  webhookAllowedHosts: ["127.0.0.1"],
  // The original plan's three doubling retries, compressed (no jitter: the gaps are checked).
  webhookSchedule: [50, 100, 200],
  webhookJitter: 0,
  webhookTimeoutMs: 400,
  reconcileEveryMs: 200,
};

let ctx: TestContext;
let root: string;
const running: { senders: WebhookSender[]; receivers: Receiver[] } = { senders: [], receivers: [] };

beforeAll(async () => {
  ctx = await createTestContext(WEBHOOKS);
  root = uuid();
  await postTaxonomy(ctx, "1.0.0", [{ node_id: root, label: "root" }]);
  await postDocument(ctx, { chunks: ["a", "b"], mappings: [{ node_id: root, version: "1.0.0", confidence: 0.9 }] });
});
afterEach(async () => {
  await Promise.all(running.senders.splice(0).map((s) => s.stop()));
  for (const r of running.receivers.splice(0)) r.stop();
});
afterAll(() => ctx.close());

function receiver(replies: Reply[] = [], fallback: Reply = 200) {
  const r = startReceiver(replies, fallback);
  running.receivers.push(r);
  return r;
}

async function sender(options: { config?: Partial<Config>; resolve?: Resolver } = {}): Promise<{ sender: WebhookSender; metrics: Metrics }> {
  const metrics = createMetrics();
  const s = new WebhookSender({
    config: { ...ctx.config, ...options.config },
    database: ctx.database,
    logger: createLogger("silent"),
    metrics,
    resolve: options.resolve,
  });
  running.senders.push(s);
  await s.start();
  return { sender: s, metrics };
}

const newAgent = async () => (await postAgent(ctx, { name: "hooked", taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id as string;

/** A task that ends (cancelled while pending) with this webhook URL: the quickest way to a terminal status. */
async function cancelledTaskWithWebhook(url: string): Promise<string> {
  const res = await ctx.request("POST", `agents/${await newAgent()}/coverage/refresh`, { body: { webhook_url: url } });
  expect(res.status).toBe(202);
  expect((await ctx.request("DELETE", `tasks/${res.body.task_id}`)).status).toBe(204);
  return res.body.task_id;
}

/** Same, with a URL written straight to the row (bypassing the request-time check) to test the delivery-time one. */
async function cancelledTaskWithStoredUrl(url: string): Promise<string> {
  const { task } = await insertTask(ctx.database.db, taskInput(await newAgent(), { webhookUrl: url, timeoutMs: 1000, maxAttempts: 1 }));
  expect((await ctx.request("DELETE", `tasks/${task.task_id}`)).status).toBe(204);
  return task.task_id;
}

const finished = (taskId: string, timeoutMs = 15_000) =>
  eventually(
    async () => {
      const d = await getDelivery(ctx.database.db, taskId);
      // A sender counts its metrics just after the row is written: wait until none is mid-delivery.
      return d && d.status !== "pending" && running.senders.every((s) => s.busy === 0) ? d : undefined;
    },
    timeoutMs,
    `delivery of ${taskId} to finish`,
  );

const retryCount = async (taskId: string) =>
  (await ctx.database.db.execute<{ n: number }>(sql`select webhook_retry_count as n from background_tasks where task_id = ${taskId}`))[0]!.n;

const counter = async (metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }, label: string) =>
  Object.fromEntries((await metric.get()).values.filter((v) => v.value > 0).map((v) => [String(v.labels[label]), v.value]));

describe("delivery", () => {
  test("a terminal task is POSTed once with its payload, Standard Webhooks headers that verify, and X-Agent-Signature over the raw body", async () => {
    const hook = receiver([200]);
    const { metrics } = await sender();
    const taskId = await cancelledTaskWithWebhook(hook.url("/coverage?src=agentq"));
    const [request] = await hook.waitFor(1);
    const delivery = await finished(taskId);

    const payload = JSON.parse(request!.body);
    expect(Object.keys(payload)).toEqual(["task_id", "agent_id", "status", "result", "error", "completed_at"]);
    expect(payload).toMatchObject({ task_id: taskId, status: "cancelled", result: null, error: null });
    expect(request!.path).toBe("/coverage");
    expect(request!.headers["content-type"]).toBe("application/json");
    expect(request!.headers["webhook-id"]).toBe(delivery.webhook_id);
    expect(request!.headers["webhook-id"]).toMatch(/^msg_[0-9a-f]{32}$/);
    // The official library verifies the exact bytes received...
    expect(new Webhook(TEST_WEBHOOK_SECRET).verify(request!.body, request!.headers)).toEqual(payload);
    // ...and so does a plain HMAC of the raw body.
    const hmac = createHmac("sha256", secretKey(TEST_WEBHOOK_SECRET)).update(request!.body).digest("hex");
    expect(request!.headers["x-agent-signature"]).toBe(`sha256=${hmac}`);

    expect(delivery).toMatchObject({ status: "delivered", attempts: 1, last_status_code: 200, last_error: null });
    expect(delivery.attempt_log).toHaveLength(1);
    expect(delivery.attempt_log[0]).toMatchObject({ attempt: 1, status_code: 200, error: null });
    expect(await retryCount(taskId)).toBe(1);
    expect(await counter(metrics.webhookDeliveries, "outcome")).toEqual({ delivered: 1 });
    expect(await counter(metrics.webhookAttempts, "result")).toEqual({ success: 1 });
  });

  test("503, 503, 200: three attempts with one webhook-id and the same bytes, backoff doubling, then delivered", async () => {
    const hook = receiver([503, 503, 200]);
    const { metrics } = await sender();
    const taskId = await cancelledTaskWithWebhook(hook.url());
    const requests = await hook.waitFor(3);
    const delivery = await finished(taskId);
    expect(delivery.status).toBe("delivered");
    expect(new Set(requests.map((r) => r.headers["webhook-id"])).size).toBe(1);
    expect(new Set(requests.map((r) => r.body)).size).toBe(1);
    const gaps = [requests[1]!.at - requests[0]!.at, requests[2]!.at - requests[1]!.at];
    expect(gaps[0]).toBeGreaterThanOrEqual(45); // 50 ms, then
    expect(gaps[1]).toBeGreaterThanOrEqual(95); // 100 ms
    expect(delivery.attempt_log.map((a) => a.status_code)).toEqual([503, 503, 200]);
    expect(await retryCount(taskId)).toBe(3);
    expect(await counter(metrics.webhookAttempts, "result")).toEqual({ http_error: 2, success: 1 });
    expect(hook.requests).toHaveLength(3);
  });

  test("a receiver that always fails gets 4 attempts, the delivery is dead and counted; redeliver sends it again with the same webhook-id", async () => {
    let healthy = false;
    const hook = receiver([], () => (healthy ? 200 : 500));
    const { metrics } = await sender();
    const taskId = await cancelledTaskWithWebhook(hook.url());
    const dead = await finished(taskId);
    expect(dead).toMatchObject({ status: "dead", dead_reason: "exhausted", attempts: 4, last_status_code: 500, last_error: "HTTP 500" });
    expect(hook.requests).toHaveLength(4);
    expect(await retryCount(taskId)).toBe(4);
    expect(await counter(metrics.webhookDeliveries, "outcome")).toEqual({ dead: 1 });

    healthy = true;
    const again = await ctx.request("POST", `tasks/${taskId}/webhook/redeliver`);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ task_id: taskId, status: "pending", dead_reason: null, webhook_id: dead.webhook_id });
    const delivered = await finished(taskId);
    expect(delivered).toMatchObject({ status: "delivered", dead_reason: null, attempts: 5 });
    expect(hook.requests[4]!.headers["webhook-id"]).toBe(dead.webhook_id);
    expect(await retryCount(taskId)).toBe(5);
  });

  test("400 is not retried: one attempt, dead", async () => {
    const hook = receiver([], 400);
    await sender();
    const taskId = await cancelledTaskWithWebhook(hook.url());
    const delivery = await finished(taskId);
    expect(delivery).toMatchObject({ status: "dead", dead_reason: "rejected", attempts: 1, last_status_code: 400 });
    expect(hook.requests).toHaveLength(1);
  });

  test("a redirect is not followed: one attempt, dead, nothing reaches the Location", async () => {
    const inside = receiver([], 200);
    const hook = receiver([], { status: 302, headers: { location: inside.url("/internal") } });
    await sender();
    const delivery = await finished(await cancelledTaskWithWebhook(hook.url()));
    expect(delivery).toMatchObject({ status: "dead", dead_reason: "rejected", attempts: 1, last_status_code: 302, last_error: "redirect (HTTP 302) not followed" });
    expect(inside.requests).toHaveLength(0);
  });

  test("a receiver that never answers: every attempt ends at the timeout and is retried", async () => {
    const hook = receiver([], "hang");
    const { metrics } = await sender({ config: { webhookTimeoutMs: 300, webhookSchedule: [50] } });
    const delivery = await finished(await cancelledTaskWithWebhook(hook.url()));
    expect(delivery).toMatchObject({ status: "dead", attempts: 2, last_status_code: null, last_error: "no answer within 300 ms" });
    for (const attempt of delivery.attempt_log) expect(attempt.duration_ms!).toBeGreaterThanOrEqual(290);
    expect(await counter(metrics.webhookAttempts, "result")).toEqual({ timeout: 2 });
  });

  test("429 with Retry-After: 1 waits at least a second before the next attempt", async () => {
    const hook = receiver([{ status: 429, headers: { "retry-after": "1" } }, 200]);
    await sender();
    const taskId = await cancelledTaskWithWebhook(hook.url());
    const [first, second] = await hook.waitFor(2);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
    expect((await finished(taskId)).status).toBe("delivered");
  });

  test("a refused connection is retried as a network error", async () => {
    const closed = receiver();
    const url = closed.url();
    closed.stop();
    const { metrics } = await sender({ config: { webhookSchedule: [50] } });
    const delivery = await finished(await cancelledTaskWithWebhook(url));
    expect(delivery).toMatchObject({ status: "dead", attempts: 2, last_status_code: null });
    expect(await counter(metrics.webhookAttempts, "result")).toEqual({ network_error: 2 });
  });
});

describe("URL safety", () => {
  test("at request time an unsafe webhook_url answers 400 with the reason, and no task is recorded", async () => {
    const agentId = await newAgent();
    for (const [url, reason] of [
      ["https://169.254.169.254/latest/meta-data/", "link-local"],
      ["http://10.0.0.1/hook", "private"],
      ["https://user:pw@127.0.0.1/hook", "credentials"],
      ["http://localhost:9/hook", "host localhost resolves to"],
      ["https://[::ffff:192.168.0.1]/hook", "IPv4-mapped"],
    ]) {
      const res = await ctx.request("POST", `agents/${agentId}/coverage/refresh`, { body: { webhook_url: url } });
      expect({ url, status: res.status, code: res.body.error?.code }).toEqual({ url, status: 400, code: "unsafe_webhook_url" });
      expect(res.body.error.message).toContain(reason!);
    }
    const rows = await ctx.database.db.execute<{ n: number }>(sql`select count(*)::int as n from background_tasks where agent_id = ${agentId}`);
    expect(rows[0]!.n).toBe(0);
  });

  test("at delivery time a host that now resolves to a private address is refused without a connection", async () => {
    const hook = receiver();
    const port = new URL(hook.url()).port;
    // The name passed its request-time check (the URL is stored as is); by delivery time it resolves inside.
    const rebinding: Resolver = async () => ["10.1.2.3"];
    const { metrics } = await sender({ resolve: rebinding });
    const taskId = await cancelledTaskWithStoredUrl(`http://rebind.test:${port}/hook`);
    const delivery = await finished(taskId);
    expect(delivery).toMatchObject({ status: "dead", dead_reason: "unsafe_url", attempts: 1, last_status_code: null });
    expect(delivery.last_error).toBe("unsafe webhook URL: host rebind.test resolves to 10.1.2.3, which is a private address");
    expect(hook.requests).toHaveLength(0);
    expect(await counter(metrics.webhookAttempts, "result")).toEqual({ unsafe_url: 1 });
  });

  test("at delivery time the real resolver's loopback answer for localhost is refused", async () => {
    const hook = receiver();
    await sender();
    const delivery = await finished(await cancelledTaskWithStoredUrl(hook.url().replace("127.0.0.1", "localhost")));
    expect(delivery.status).toBe("dead");
    expect(delivery.last_error).toContain("host localhost resolves to");
    expect(delivery.last_error).toContain("loopback");
    expect(hook.requests).toHaveLength(0);
  });

  test("the request goes to the checked address with the URL's host in the Host header", async () => {
    const hook = receiver();
    const port = new URL(hook.url()).port;
    await sender({ config: { webhookAllowedHosts: ["hooks.internal.test"] }, resolve: async () => ["127.0.0.1"] });
    await finished(await cancelledTaskWithStoredUrl(`http://hooks.internal.test:${port}/hook`));
    expect(hook.requests[0]!.headers.host).toBe(`hooks.internal.test:${port}`);
  });

  test("without a signing secret a webhook_url is refused with webhooks_not_configured", async () => {
    const bare = await createTestContext({ webhookSecrets: [] });
    try {
      const agentTaxonomy = uuid();
      await postTaxonomy(bare, "1.0.0", [{ node_id: agentTaxonomy, label: "r" }]);
      const agent = await postAgent(bare, { name: "a", taxonomy_node_ids: [agentTaxonomy], taxonomy_version: "1.0.0" });
      const res = await bare.request("POST", `agents/${agent.agent_id}/coverage/refresh`, { body: { webhook_url: "https://93.184.215.14/h" } });
      expect([res.status, res.body.error.code]).toEqual([400, "webhooks_not_configured"]);
    } finally {
      await bare.close();
    }
  });
});

describe("durability", () => {
  test("the outbox row commits and rolls back with the statement that ends the task", async () => {
    const agentId = await newAgent();
    const start = async () => {
      const { task } = await insertTask(
        ctx.database.db,
        taskInput(agentId, { priority: "low", webhookUrl: "https://93.184.215.14/hook", timeoutMs: 1000, maxAttempts: 1 }),
      );
      return (await claimTask(ctx.database.db, task.task_id, "test", 60_000))!;
    };
    const rolledBack = await start();
    await ctx.database.db
      .transaction(async (tx) => {
        expect((await settleTask(tx, rolledBack.taskId, rolledBack.leaseToken, { kind: "failed", error: "boom" }))?.status).toBe("failed");
        throw new Error("roll back");
      })
      .catch(() => {});
    expect(await getDelivery(ctx.database.db, rolledBack.taskId)).toBeNull();

    const committed = await start();
    expect((await settleTask(ctx.database.db, committed.taskId, committed.leaseToken, { kind: "failed", error: "boom" }))?.status).toBe("failed");
    const delivery = (await getDelivery(ctx.database.db, committed.taskId)) as DeliveryView;
    expect(delivery).toMatchObject({ status: "pending", attempts: 0, url: "https://93.184.215.14/hook" });
  });

  test("a sender killed mid-delivery: another sender delivers it, with the same webhook-id", async () => {
    const hook = receiver(["hang"], 200);
    const child = await spawnSupervisor(ctx, {
      workers: 0,
      env: {
        AGENTQ_WEBHOOK_SECRETS: TEST_WEBHOOK_SECRET,
        AGENTQ_WEBHOOK_ALLOW_HTTP: "true",
        AGENTQ_WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
        AGENTQ_WEBHOOK_TIMEOUT_MS: "2000",
      },
    });
    const taskId = await cancelledTaskWithWebhook(hook.url());
    const [first] = await hook.waitFor(1); // the child's attempt is in flight
    child.proc.kill(9);
    await child.exited;
    const before = await getDelivery(ctx.database.db, taskId);
    expect(before).toMatchObject({ status: "pending", attempts: 0 }); // it died before recording anything

    // Its lock (timeout + margin) lapses; a sender elsewhere takes the delivery over.
    await sender({ config: { webhookTimeoutMs: 2000 } });
    const [, second] = await hook.waitFor(2, 20_000);
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    expect(second!.body).toBe(first!.body);
    expect(await finished(taskId)).toMatchObject({ status: "delivered", attempts: 1 });
  }, 30_000);

  test("a sender that takes a delivery over mid-round continues the schedule where it stood, not from its first step", async () => {
    const hook = receiver([], 503);
    const first = await sender();
    const taskId = await cancelledTaskWithWebhook(hook.url());
    // Attempts 1 and 2 recorded; attempt 3 is due 100 ms after the second (step 2 of the schedule).
    await eventually(async () => ((await getDelivery(ctx.database.db, taskId))?.attempts === 2 ? true : undefined), 5000, "two attempts");
    await first.sender.stop(); // the retry waits in the outbox, not in this sender
    running.senders.splice(running.senders.indexOf(first.sender), 1);
    expect(await getDelivery(ctx.database.db, taskId)).toMatchObject({ status: "pending", attempts: 2 });

    await sender();
    const requests = await hook.waitFor(4);
    expect((await finished(taskId)).status).toBe("dead"); // 4 attempts in the round, not 2 more than that
    expect(hook.requests).toHaveLength(4);
    // Attempt 3 failed: the wait before attempt 4 is step 3, 200 ms (a fresh round would wait 50 ms).
    expect(requests[3]!.at - requests[2]!.at).toBeGreaterThanOrEqual(195);
  });

  test("end to end: a refresh with a webhook_url runs on the engine and the receiver gets completed with the coverage result", async () => {
    const hook = receiver();
    await sender();
    const engine = await startTestEngine(ctx, { workers: 1 });
    try {
      const res = await ctx.request("POST", `agents/${await newAgent()}/coverage/refresh`, { body: { webhook_url: hook.url() } });
      const [request] = await hook.waitFor(1);
      const payload = JSON.parse(request!.body);
      expect(payload).toMatchObject({ task_id: res.body.task_id, status: "completed", error: null });
      expect(payload.result).toMatchObject({ overall_coverage: 10, total_documents: 1, total_chunks: 2 });
      const task = await ctx.request("GET", `tasks/${res.body.task_id}`);
      expect(payload.completed_at).toBe(task.body.completed_at);
      // The receiver has answered; the sender records the attempt just after: wait for that.
      expect((await finished(res.body.task_id)).status).toBe("delivered");
      expect((await ctx.request("GET", `tasks/${res.body.task_id}/webhook`)).body.status).toBe("delivered");
    } finally {
      await engine.stop();
    }
  });

  test("the delivery view and redeliver answer 404 for an unknown task and 409 for a task without webhook or not ended", async () => {
    expect((await ctx.request("GET", `tasks/${newTaskId()}/webhook`)).status).toBe(404);
    expect((await ctx.request("POST", `tasks/${newTaskId()}/webhook/redeliver`)).status).toBe(404);
    const plain = await ctx.request("POST", `agents/${await newAgent()}/coverage/refresh`);
    const noHook = await ctx.request("POST", `tasks/${plain.body.task_id}/webhook/redeliver`);
    expect([noHook.status, noHook.body.error.code]).toEqual([409, "conflict"]);
    const pending = await ctx.request("POST", `agents/${await newAgent()}/coverage/refresh`, { body: { webhook_url: "https://93.184.215.14/h" } });
    const early = await ctx.request("POST", `tasks/${pending.body.task_id}/webhook/redeliver`);
    expect([early.status, early.body.error.message]).toEqual([409, `task ${pending.body.task_id} is pending; its webhook is sent when it ends`]);
    expect((await ctx.request("GET", `tasks/${pending.body.task_id}/webhook`)).status).toBe(404);
  });
});
