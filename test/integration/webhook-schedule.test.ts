/**
 * The webhook retry schedule against a real receiver on loopback, real PostgreSQL and real
 * senders, with short compressed schedules: each failed attempt records when the next is due
 * (the schedule's step, jittered, never before a Retry-After, capped), the retry waits in the
 * outbox and survives its sender being killed, 410 Gone stops that URL, and the deliveries
 * list and bulk redelivery. Also retention, which keeps a task while its delivery is pending.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, TEST_WEBHOOK_SECRET, type TestContext } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { eventually, spawnSupervisor } from "../helpers/engine.ts";
import { startReceiver, type Receiver, type Reply } from "../helpers/receiver.ts";
import { WebhookSender } from "../../src/webhooks/sender.ts";
import { createMetrics, type Metrics } from "../../src/metrics/registry.ts";
import { createLogger } from "../../src/logger.ts";
import { getDelivery, type DeliveryView } from "../../src/db/webhooks.ts";
import { deleteExpired } from "../../src/db/retention.ts";
import type { Config } from "../../src/config.ts";

const BULK_MAX = 3;

let ctx: TestContext;
let root: string;
const running: { senders: WebhookSender[]; receivers: Receiver[] } = { senders: [], receivers: [] };

beforeAll(async () => {
  ctx = await createTestContext({
    webhookAllowHttp: true,
    webhookAllowedHosts: ["127.0.0.1"],
    webhookTimeoutMs: 400,
    webhookSchedule: [50, 100, 200],
    webhookJitter: 0,
    reconcileEveryMs: 200,
    bulkMaxTasks: BULK_MAX,
  });
  root = uuid();
  await postTaxonomy(ctx, "1.0.0", [{ node_id: root, label: "root" }]);
  await postDocument(ctx, { chunks: ["a"], mappings: [{ node_id: root, version: "1.0.0", confidence: 0.9 }] });
});
afterEach(async () => {
  await Promise.all(running.senders.splice(0).map((s) => s.stop()));
  for (const r of running.receivers.splice(0)) r.stop();
  // Retries a test left waiting would be sent by the next test's sender, to a receiver that is gone.
  await ctx.database.db.execute(sql`delete from webhook_outbox where status = 'pending'`);
});
afterAll(() => ctx.close());

function receiver(replies: Reply[] = [], fallback: Reply = 200) {
  const r = startReceiver(replies, fallback);
  running.receivers.push(r);
  return r;
}

async function sender(
  options: { config?: Partial<Config>; random?: () => number; sweepEveryMs?: number } = {},
): Promise<{ sender: WebhookSender; metrics: Metrics }> {
  const metrics = createMetrics();
  const s = new WebhookSender({
    config: { ...ctx.config, ...options.config },
    database: ctx.database,
    logger: createLogger("silent"),
    metrics,
    random: options.random,
    sweepEveryMs: options.sweepEveryMs,
  });
  running.senders.push(s);
  await s.start();
  return { sender: s, metrics };
}

const newAgent = async () => (await postAgent(ctx, { name: "hooked", taxonomy_node_ids: [root], taxonomy_version: "1.0.0" })).agent_id as string;

/** A task of `agentId` that ends (cancelled while pending) with this webhook URL. */
async function endedTask(url: string, agentId?: string): Promise<string> {
  const res = await ctx.request("POST", `agents/${agentId ?? (await newAgent())}/coverage/refresh`, { body: { webhook_url: url } });
  expect(res.status).toBe(202);
  expect((await ctx.request("DELETE", `tasks/${res.body.task_id}`)).status).toBe(204);
  return res.body.task_id;
}

const delivery = (taskId: string) => getDelivery(ctx.database.db, taskId) as Promise<DeliveryView>;

const finished = (taskId: string, timeoutMs = 15_000) =>
  eventually(
    async () => {
      const d = await getDelivery(ctx.database.db, taskId);
      return d && d.status !== "pending" && running.senders.every((s) => s.busy === 0) ? d : undefined;
    },
    timeoutMs,
    `delivery of ${taskId} to finish`,
  );

const attemptsRecorded = (taskId: string, n: number) =>
  eventually(async () => ((await getDelivery(ctx.database.db, taskId))?.attempts ?? 0) >= n || undefined, 15_000, `${n} attempts of ${taskId}`);

/** Every attempt row: when it was recorded and when the next is due (epoch ms), and the outbox lock. */
async function attemptTimes(taskId: string) {
  return ctx.database.db.execute<{ attempt: number; recorded_ms: number; next_ms: number | null }>(sql`
    select attempt, extract(epoch from created_at) * 1000 as recorded_ms, extract(epoch from next_attempt_at) * 1000 as next_ms
    from webhook_deliveries where task_id = ${taskId} order by attempt`);
}

const waitOf = (row: { recorded_ms: number; next_ms: number | null }) => (row.next_ms === null ? null : Number(row.next_ms) - Number(row.recorded_ms));

const outboxRow = async (taskId: string) =>
  (
    await ctx.database.db.execute<{ status: string; locked_by: string | null; locked_until: string | null; round_attempts: number }>(
      sql`select status, locked_by, locked_until, round_attempts from webhook_outbox where task_id = ${taskId}`,
    )
  )[0]!;

const counter = async (metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }, label: string) =>
  Object.fromEntries((await metric.get()).values.filter((v) => v.value > 0).map((v) => [String(v.labels[label]), v.value]));

describe("the schedule", () => {
  test("each failed attempt records its next attempt one jittered step later (±20%), and the retries arrive on time, not before", async () => {
    const schedule = [120, 250, 400];
    const hook = receiver([], 503);
    // A sweep far away: only the sender's own wake-up for the retries it recorded can keep them on time.
    await sender({ config: { webhookSchedule: schedule, webhookJitter: 0.2 }, sweepEveryMs: 60_000 });
    const taskId = await endedTask(hook.url());
    const dead = await finished(taskId);
    expect(dead).toMatchObject({ status: "dead", dead_reason: "exhausted", attempts: 4, next_attempt_at: null });

    const rows = await attemptTimes(taskId);
    const waits = rows.map(waitOf);
    expect(waits).toHaveLength(4);
    expect(waits[3]).toBeNull(); // the last attempt has no next
    schedule.forEach((step, i) => {
      expect(waits[i]!).toBeGreaterThanOrEqual(step * 0.8 - 0.01);
      expect(waits[i]!).toBeLessThanOrEqual(step * 1.2 + 0.01);
    });
    const requests = hook.requests;
    expect(requests).toHaveLength(4);
    for (let i = 0; i < 3; i++) {
      const gap = requests[i + 1]!.at - requests[i]!.at;
      expect(gap).toBeGreaterThanOrEqual(waits[i]! - 2); // never before it is due
      expect(gap).toBeLessThan(waits[i]! + 500); // and not left for the (60 s) sweep
    }
  });

  test("with the jitter's random fixed, the waits are exact: 0 gives 80% of each step, 0.5 gives the step", async () => {
    for (const [random, factor] of [
      [0, 0.8],
      [0.5, 1],
    ] as const) {
      const hook = receiver([], 503);
      const { sender: s } = await sender({ config: { webhookSchedule: [100, 200], webhookJitter: 0.2 }, random: () => random });
      const taskId = await endedTask(hook.url());
      await finished(taskId);
      const waits = (await attemptTimes(taskId)).map(waitOf);
      expect(waits.map((w) => (w === null ? null : Math.round(w * 1000) / 1000))).toEqual([100 * factor, 200 * factor, null]);
      await s.stop();
    }
  });

  test("Retry-After later than the step sets the next attempt; capped at AGENTQ_WEBHOOK_MAX_RETRY_AFTER_MS; an earlier one does not bring the step forward", async () => {
    const twoToThreeSecondsAhead = () => new Date(Math.ceil((Date.now() + 3000) / 1000) * 1000).toUTCString();
    const cases: { reply: Reply; wait: [number, number] }[] = [
      { reply: { status: 503, headers: { "retry-after": "2" } }, wait: [2000, 2000] }, // seconds, over the 1.5 s step
      { reply: { status: 429, headers: { "retry-after": "3600" } }, wait: [2500, 2500] }, // an hour, capped at 2.5 s
      { reply: { status: 503, headers: { "retry-after": "1" } }, wait: [1500, 1500] }, // under the step: the step
      { reply: () => ({ status: 503, headers: { "retry-after": twoToThreeSecondsAhead() } }), wait: [2000, 2500] }, // an HTTP date 2-3 s ahead, capped
    ];
    await sender({ config: { webhookSchedule: [1500], webhookMaxRetryAfterMs: 2500 } });
    const tasks = [];
    for (const c of cases) tasks.push(await endedTask(receiver([c.reply], 200).url()));
    for (const [i, taskId] of tasks.entries()) {
      await attemptsRecorded(taskId, 1);
      const [first] = await attemptTimes(taskId);
      const wait = waitOf(first!)!;
      expect({ i, ok: wait >= cases[i]!.wait[0] - 1 && wait <= cases[i]!.wait[1] + 1, wait }).toMatchObject({ i, ok: true });
      // Waiting for it costs the sender nothing: the row is pending and unlocked, due later.
      expect(await outboxRow(taskId)).toMatchObject({ status: "pending", locked_by: null, locked_until: null, round_attempts: 1 });
    }
  });

  test("a retry survives its sender being killed: a new sender picks the due row up, at its due time, same webhook-id", async () => {
    const hook = receiver([503], 200);
    const child = await spawnSupervisor(ctx, {
      workers: 0,
      env: {
        AGENTQ_WEBHOOK_SECRETS: TEST_WEBHOOK_SECRET,
        AGENTQ_WEBHOOK_ALLOW_HTTP: "true",
        AGENTQ_WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
        AGENTQ_WEBHOOK_SCHEDULE: "1500ms",
        AGENTQ_WEBHOOK_JITTER: "0",
      },
    });
    const taskId = await endedTask(hook.url());
    await attemptsRecorded(taskId, 1); // the child's first attempt failed and is recorded, the retry due 1.5 s later
    child.proc.kill(9);
    await child.exited;
    const waiting = await delivery(taskId);
    expect(waiting).toMatchObject({ status: "pending", attempts: 1 });
    expect(await outboxRow(taskId)).toMatchObject({ locked_by: null, round_attempts: 1 });
    const dueAt = Date.parse(waiting.next_attempt_at!);
    expect(dueAt).toBeGreaterThan(Date.now()); // killed before it was due

    // A new sender (its own schedule is irrelevant: the due time is in the row).
    await sender({ config: { webhookSchedule: [10] } });
    const [first, second] = await hook.waitFor(2, 10_000);
    expect(Date.now()).toBeGreaterThanOrEqual(dueAt);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1500 - 2);
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    expect(await finished(taskId)).toMatchObject({ status: "delivered", attempts: 2 });
  }, 30_000);
});

describe("410 Gone", () => {
  test("stops that URL: the delivery is dead (gone) without retries, later deliveries to it are not attempted; other URLs are unaffected", async () => {
    let goneAnswers = 410;
    const hook = receiver([], (req) => (req.path === "/gone" ? goneAnswers : 200));
    const { metrics } = await sender();
    const goneUrl = hook.url("/gone");

    const first = await endedTask(goneUrl);
    expect(await finished(first)).toMatchObject({ status: "dead", dead_reason: "gone", attempts: 1, last_status_code: 410 });
    const marks = await ctx.database.db.execute<{ url: string; task_id: string }>(sql`select url, task_id from webhook_gone_urls`);
    expect([...marks]).toEqual([{ url: goneUrl, task_id: first }]);

    const second = await endedTask(goneUrl);
    const skipped = await finished(second);
    expect(skipped).toMatchObject({ status: "dead", dead_reason: "gone", attempts: 0, attempt_log: [] });
    expect(skipped.last_error).toContain(`answered 410 Gone to the delivery of task ${first}`);
    const other = await endedTask(hook.url("/other"));
    expect(await finished(other)).toMatchObject({ status: "delivered" });
    expect(hook.requests.filter((r) => r.path === "/gone")).toHaveLength(1);
    expect(await counter(metrics.webhookDeliveries, "outcome")).toEqual({ dead: 2, delivered: 1 });

    // A bulk redelivery leaves gone URLs alone...
    const bulk = await ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "dead", task_ids: [first, second] } });
    expect(bulk.body).toMatchObject({ redelivered: 0, task_ids: [] });
    // ...redelivering one by task id is the operator re-enabling the URL.
    goneAnswers = 204;
    expect((await ctx.request("POST", `tasks/${second}/webhook/redeliver`)).status).toBe(202);
    expect(await finished(second)).toMatchObject({ status: "delivered", dead_reason: null, attempts: 1 });
    expect((await ctx.database.db.execute(sql`select url from webhook_gone_urls`)).length).toBe(0);
    expect(await finished(await endedTask(goneUrl))).toMatchObject({ status: "delivered" });
  });
});

describe("GET /webhooks/deliveries and bulk redelivery", () => {
  let agentX: string;
  let agentY: string;
  let deadX: string[];
  let deadY: string[];
  let deliveredX: string[];
  let healthy = false;
  let hook: Receiver;

  beforeAll(async () => {
    agentX = await newAgent();
    agentY = await newAgent();
    hook = startReceiver([], () => (healthy ? 204 : 400));
    const s = new WebhookSender({ config: ctx.config, database: ctx.database, logger: createLogger("silent") });
    await s.start();
    try {
      deadX = [];
      deadY = [];
      deliveredX = [];
      for (let i = 0; i < 5; i++) deadX.push(await endedTask(hook.url(), agentX));
      for (let i = 0; i < 2; i++) deadY.push(await endedTask(hook.url(), agentY));
      for (const id of [...deadX, ...deadY]) await eventually(async () => (await getDelivery(ctx.database.db, id))?.status === "dead" || undefined);
      healthy = true;
      for (let i = 0; i < 2; i++) deliveredX.push(await endedTask(hook.url(), agentX));
      for (const id of deliveredX) await eventually(async () => (await getDelivery(ctx.database.db, id))?.status === "delivered" || undefined);
      await eventually(async () => s.busy === 0 || undefined);
    } finally {
      await s.stop();
    }
    healthy = false;
  });
  afterAll(() => hook.stop());

  /** Newest first, as the API orders them: by created_at (when the task ended), then task_id. */
  const newestFirst = async (ids: string[]) =>
    (
      await ctx.database.db.execute<{ task_id: string }>(
        sql`select task_id from webhook_outbox where task_id = any(${`{${ids.join(",")}}`}::text[]) order by created_at desc, task_id desc`,
      )
    ).map((r) => r.task_id);

  test("filters by status and agent, newest first, paged by cursor without repeats; items carry the agent and dead_reason", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    const pages: number[] = [];
    do {
      const res = await ctx.request("GET", `webhooks/deliveries?status=dead&agent_id=${agentX}&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status).toBe(200);
      pages.push(res.body.deliveries.length);
      for (const d of res.body.deliveries) {
        expect(d).toMatchObject({ agent_id: agentX, status: "dead", dead_reason: "rejected", attempts: 1, last_status_code: 400, next_attempt_at: null, delivered_at: null });
        expect(d.webhook_id).toMatch(/^msg_/);
        expect(d.attempt_log).toBeUndefined();
        seen.push(d.task_id);
      }
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(pages).toEqual([2, 2, 1]);
    expect(seen).toEqual(await newestFirst(deadX));

    const delivered = await ctx.request("GET", `webhooks/deliveries?status=delivered&agent_id=${agentX}`);
    expect(delivered.body.deliveries.map((d: { task_id: string }) => d.task_id)).toEqual(await newestFirst(deliveredX));
    expect(delivered.body.deliveries[0]).toMatchObject({ status: "delivered", dead_reason: null, attempts: 1 });
    const everything = await ctx.request("GET", `webhooks/deliveries?agent_id=${agentX}`);
    expect(everything.body.deliveries).toHaveLength(7);
    const both = await ctx.request("GET", `webhooks/deliveries?status=dead,delivered&agent_id=${agentY}`);
    expect(both.body.deliveries.map((d: { task_id: string }) => d.task_id)).toEqual(await newestFirst(deadY));
    const nobody = await ctx.request("GET", `webhooks/deliveries?status=dead&agent_id=${uuid()}`);
    expect(nobody.body).toEqual({ deliveries: [], next_cursor: null });
  });

  test("a cursor the API did not issue, an unknown status or field, and a bad limit are 400", async () => {
    for (const query of ["cursor=bm90LWEtY3Vyc29y", "status=failed", "limit=0", "limit=101", "agent_id=x", "colour=red"]) {
      const res = await ctx.request("GET", `webhooks/deliveries?${query}`);
      expect({ query, status: res.status, code: res.body.error?.code }).toEqual({ query, status: 400, code: "validation_error" });
    }
  });

  test("bulk redelivery restarts dead deliveries oldest first, at most AGENTQ_BULK_MAX_TASKS per call, same webhook-ids; others untouched", async () => {
    healthy = true;
    await sender();
    const before = new Map<string, string>();
    for (const id of deadX) before.set(id, (await delivery(id)).webhook_id);
    const oldestFirst = (await newestFirst(deadX)).reverse();

    const first = await ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "dead", agent_id: agentX } });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ task_ids: oldestFirst.slice(0, BULK_MAX), redelivered: BULK_MAX, has_more: true, max_per_call: BULK_MAX });
    const second = await ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "dead", agent_id: agentX } });
    // The first call's deliveries are pending (or delivered) now: never matched twice.
    expect(second.body).toEqual({ task_ids: oldestFirst.slice(BULK_MAX), redelivered: 2, has_more: false, max_per_call: BULK_MAX });

    for (const id of deadX) expect(await finished(id)).toMatchObject({ status: "delivered", attempts: 2, webhook_id: before.get(id) });
    const third = await ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "dead", agent_id: agentX } });
    expect(third.body).toMatchObject({ task_ids: [], redelivered: 0, has_more: false });
    for (const id of deadY) expect(await delivery(id)).toMatchObject({ status: "dead" }); // another agent's
  });

  test("by task_ids, a replay of delivered ones, and concurrent calls restart each delivery once", async () => {
    healthy = true;
    await sender();
    const byId = await ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "dead", task_ids: [deadY[0]] } });
    expect(byId.body).toMatchObject({ task_ids: [deadY[0]], redelivered: 1 });
    expect(await finished(deadY[0]!)).toMatchObject({ status: "delivered" });
    expect(await delivery(deadY[1]!)).toMatchObject({ status: "dead" });

    const replayed = hook.requests.length;
    const replay = await ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "delivered", task_ids: [deliveredX[0]] } });
    expect(replay.body).toMatchObject({ task_ids: [deliveredX[0]], redelivered: 1 });
    expect(await finished(deliveredX[0]!)).toMatchObject({ status: "delivered", attempts: 2 });
    expect(hook.requests.length).toBe(replayed + 1);

    // Agent X's seven delivered deliveries, replayed by two calls at once (at most three each).
    const [a, b] = await Promise.all(
      [0, 1].map(() => ctx.request("POST", "webhooks/deliveries/redeliver", { body: { status: "delivered", agent_id: agentX } })),
    );
    const restarted = [...a!.body.task_ids, ...b!.body.task_ids];
    expect(new Set(restarted).size).toBe(restarted.length);
    expect(restarted.length).toBeGreaterThan(0);
    expect(restarted.length).toBeLessThanOrEqual(2 * BULK_MAX);
  });

  test("the body is validated: a status other than dead or delivered, unknown fields, bad task ids and impossible dates are 400", async () => {
    for (const body of [
      {},
      { status: "pending" },
      { status: "dead", colour: "red" },
      { status: "dead", task_ids: [] },
      { status: "dead", task_ids: ["x"] },
      { status: "dead", created_after: "2024-02-30T00:00:00Z" },
    ]) {
      const res = await ctx.request("POST", "webhooks/deliveries/redeliver", { body });
      expect({ body, status: res.status, code: res.body.error?.code }).toEqual({ body, status: 400, code: "validation_error" });
    }
  });

  test("the OpenAPI document describes both operations", async () => {
    const spec = (await ctx.request("GET", "/swagger/json")).body;
    expect(spec.paths["/api/v1/webhooks/deliveries"].get.parameters.map((p: { name: string }) => p.name).sort()).toEqual(["agent_id", "cursor", "limit", "status"]);
    const redeliver = spec.paths["/api/v1/webhooks/deliveries/redeliver"].post;
    expect(Object.keys(redeliver.requestBody.content)).toEqual(["application/json"]);
    expect(redeliver.responses["202"]).toBeDefined();
  });
});

describe("retention", () => {
  test("keeps a task while its delivery is pending and for the retention period after it ended; then deletes both", async () => {
    const taskId = await endedTask("http://127.0.0.1:9/never-sent"); // no sender runs: the delivery stays pending
    const retentionMs = 30 * 60_000;
    await ctx.database.db.execute(sql`update background_tasks set completed_at = now() - interval '2 days' where task_id = ${taskId}`);
    const exists = async () => (await ctx.database.db.execute(sql`select 1 from background_tasks where task_id = ${taskId}`)).length === 1;

    await deleteExpired(ctx.database.db, retentionMs, 90 * 86_400_000);
    expect(await exists()).toBe(true); // pending: its retries may run for days

    await ctx.database.db.execute(sql`update webhook_outbox set status = 'dead', dead_reason = 'exhausted', updated_at = now() - interval '10 minutes' where task_id = ${taskId}`);
    await deleteExpired(ctx.database.db, retentionMs, 90 * 86_400_000);
    expect(await exists()).toBe(true); // dead 10 minutes ago: still listed and redeliverable

    await ctx.database.db.execute(sql`update webhook_outbox set updated_at = now() - interval '1 hour' where task_id = ${taskId}`);
    await deleteExpired(ctx.database.db, retentionMs, 90 * 86_400_000);
    expect(await exists()).toBe(false);
    expect(await getDelivery(ctx.database.db, taskId)).toBeNull();
  });
});
