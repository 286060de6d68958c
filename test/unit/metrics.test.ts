/** The metrics registry, scrape-time gauges, process metrics under Bun, task telemetry and HTTP helpers. */
import { describe, expect, test } from "bun:test";
import {
  CANCEL_STATES,
  createMetrics,
  exposition,
  PRIORITIES,
  RATE_LIMIT_POLICIES,
  RECOVERY_REASONS,
  RESTART_REASONS,
  SCRAPE_READ_TIMEOUT_MS,
  TASK_OUTCOMES,
  UNSUPPORTED_DEFAULT_METRICS,
  WEBHOOK_OUTCOMES,
  WEBHOOK_RESULTS,
  type Metrics,
} from "../../src/metrics/registry.ts";
import { TaskTelemetry } from "../../src/metrics/taskEvents.ts";
import { methodLabel, requestIdFrom, RouteMatcher, statusCode } from "../../src/metrics/http.ts";
import { captureLogs, families, samples } from "../helpers/metrics.ts";
import pkg from "../../package.json" with { type: "json" };

const value = async (metrics: Metrics, series: string) => samples(await metrics.registry.metrics()).get(series);

describe("createMetrics", () => {
  test("every bounded label value starts at 0 and build info names the version and Bun", async () => {
    const text = await createMetrics({}, { processMetrics: false }).registry.metrics();
    const s = samples(text);
    for (const p of PRIORITIES) {
      expect(s.get(`agentq_tasks_enqueued_total{priority="${p}"}`)).toBe(0);
      expect(s.get(`agentq_task_wait_seconds_count{priority="${p}"}`)).toBe(0);
    }
    for (const o of TASK_OUTCOMES) {
      expect(s.get(`agentq_tasks_finished_total{outcome="${o}"}`)).toBe(0);
      expect(s.get(`agentq_task_run_seconds_count{outcome="${o}"}`)).toBe(0);
    }
    for (const st of CANCEL_STATES) expect(s.get(`agentq_task_cancellations_total{state="${st}"}`)).toBe(0);
    for (const r of RECOVERY_REASONS) expect(s.get(`agentq_tasks_recovered_total{reason="${r}"}`)).toBe(0);
    for (const r of RESTART_REASONS) expect(s.get(`agentq_worker_restarts_total{reason="${r}"}`)).toBe(0);
    for (const o of WEBHOOK_OUTCOMES) expect(s.get(`agentq_webhook_deliveries_total{outcome="${o}"}`)).toBe(0);
    for (const r of WEBHOOK_RESULTS) {
      expect(s.get(`agentq_webhook_attempts_total{result="${r}"}`)).toBe(0);
      expect(s.get(`agentq_webhook_attempt_duration_seconds_count{result="${r}"}`)).toBe(0);
    }
    for (const p of RATE_LIMIT_POLICIES) expect(s.get(`agentq_rate_limit_errors_total{policy="${p}"}`)).toBe(0);
    expect(s.get("agentq_lease_expiries_total")).toBe(0);
    expect(s.get("agentq_worker_busy_seconds_total")).toBe(0);
    expect(s.get(`agentq_build_info{version="${pkg.version}",bun_version="${Bun.version}"}`)).toBe(1);
    // Wait and run buckets reach from milliseconds to minutes.
    expect(s.has(`agentq_task_wait_seconds_bucket{le="0.005",priority="high"}`)).toBe(true);
    expect(s.has(`agentq_task_run_seconds_bucket{le="600",outcome="completed"}`)).toBe(true);
  });

  test("gauges without a source are declared but have no samples", async () => {
    const text = await createMetrics({}, { processMetrics: false }).registry.metrics();
    const f = families(text);
    const s = samples(text);
    for (const name of [
      "agentq_queue_depth",
      "agentq_oldest_pending_task_age_seconds",
      "agentq_tasks_overdue",
      "agentq_workers",
      "agentq_workers_busy",
      "agentq_worker_utilisation_ratio",
    ]) {
      expect(f.has(name)).toBe(true);
      expect([...s.keys()].some((k) => k === name || k.startsWith(`${name}{`))).toBe(false);
    }
  });

  test("scrape-time gauges read their sources on every scrape", async () => {
    let busy = 1;
    let accrued = 0;
    const metrics = createMetrics(
      {
        queueDepths: async () => ({ high: 3, medium: 0, low: 7 }),
        oldestPendingAgeSeconds: async () => 12.5,
        overdueTasks: async () => 2,
        workers: () => ({ busy, total: 4 }),
        accrueBusySeconds: () => {
          accrued++;
        },
      },
      { processMetrics: false },
    );
    let s = samples(await metrics.registry.metrics());
    expect(s.get(`agentq_queue_depth{priority="high"}`)).toBe(3);
    expect(s.get(`agentq_queue_depth{priority="medium"}`)).toBe(0);
    expect(s.get(`agentq_queue_depth{priority="low"}`)).toBe(7);
    expect(s.get("agentq_oldest_pending_task_age_seconds")).toBe(12.5);
    expect(s.get("agentq_tasks_overdue")).toBe(2);
    expect(s.get("agentq_workers")).toBe(4);
    expect(s.get("agentq_workers_busy")).toBe(1);
    expect(s.get("agentq_worker_utilisation_ratio")).toBe(0.25);
    expect(accrued).toBe(1);
    busy = 3;
    s = samples(await metrics.registry.metrics());
    expect(s.get("agentq_worker_utilisation_ratio")).toBe(0.75);
    expect(accrued).toBe(2);
  });

  test("utilisation is 0, not NaN, when a supervisor has no live thread", async () => {
    const metrics = createMetrics({ workers: () => ({ busy: 0, total: 0 }) }, { processMetrics: false });
    expect(await value(metrics, "agentq_worker_utilisation_ratio")).toBe(0);
    expect(await value(metrics, "agentq_workers")).toBe(0);
  });

  test("a failing source is logged and its gauge skipped; the other gauges and counters are still served", async () => {
    const { lines, logger } = captureLogs();
    const metrics = createMetrics(
      {
        queueDepths: async () => {
          throw new Error("connect ECONNREFUSED 127.0.0.1:6379");
        },
        oldestPendingAgeSeconds: async () => 1,
        overdueTasks: () => Promise.reject("not an Error"),
      },
      { logger, processMetrics: false },
    );
    const s = samples((await exposition(metrics)).body);
    expect([...s.keys()].some((k) => k.startsWith("agentq_queue_depth"))).toBe(false);
    expect(s.has("agentq_tasks_overdue")).toBe(false);
    expect(s.get("agentq_oldest_pending_task_age_seconds")).toBe(1);
    expect(s.get(`agentq_tasks_enqueued_total{priority="high"}`)).toBe(0);
    const warnings = lines.filter((l) => l.msg === "metric collection failed; gauge skipped");
    expect(warnings.map((l) => l.metric).sort()).toEqual(["agentq_queue_depth", "agentq_tasks_overdue"]);
    expect(warnings.find((l) => l.metric === "agentq_queue_depth")?.err).toContain("ECONNREFUSED");
  });

  test(
    "a source that never answers is given up after the scrape read timeout",
    async () => {
      const { lines, logger } = captureLogs();
      const metrics = createMetrics({ overdueTasks: () => new Promise<number>(() => {}) }, { logger, processMetrics: false });
      const start = performance.now();
      const s = samples(await metrics.registry.metrics());
      const elapsed = performance.now() - start;
      expect(s.has("agentq_tasks_overdue")).toBe(false);
      expect(elapsed).toBeGreaterThanOrEqual(SCRAPE_READ_TIMEOUT_MS - 50);
      expect(elapsed).toBeLessThan(SCRAPE_READ_TIMEOUT_MS + 2000);
      expect(String(lines[0]?.err)).toContain("no answer within");
    },
    SCRAPE_READ_TIMEOUT_MS + 5000,
  );

  test("a source that recovers is reported again on the next scrape", async () => {
    let down = true;
    const metrics = createMetrics(
      {
        overdueTasks: async () => {
          if (down) throw new Error("down");
          return 0;
        },
      },
      { processMetrics: false },
    );
    expect(await value(metrics, "agentq_tasks_overdue")).toBeUndefined();
    down = false;
    expect(await value(metrics, "agentq_tasks_overdue")).toBe(0);
  });

  test("process metrics: the ones Bun backs are real numbers, the ones it does not are removed", async () => {
    const metrics = createMetrics({});
    await metrics.registry.metrics(); // the event-loop lag gauge is measured after a first scrape
    await Bun.sleep(20);
    const text = await metrics.registry.metrics();
    const s = samples(text);
    const f = families(text);
    for (const name of UNSUPPORTED_DEFAULT_METRICS) expect(f.has(name)).toBe(false);
    expect(s.get("process_cpu_user_seconds_total")!).toBeGreaterThan(0);
    expect(s.get("process_cpu_seconds_total")!).toBeGreaterThan(0);
    expect(s.get("process_resident_memory_bytes")!).toBeGreaterThan(1024 * 1024);
    expect(s.get("process_virtual_memory_bytes")!).toBeGreaterThan(s.get("process_resident_memory_bytes")!);
    expect(s.get("process_open_fds")!).toBeGreaterThan(0);
    expect(s.get("process_max_fds")!).toBeGreaterThan(0);
    const start = s.get("process_start_time_seconds")!;
    expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(5);
    expect(s.get("nodejs_eventloop_lag_max_seconds")!).toBeGreaterThan(0);
    expect(s.get("nodejs_eventloop_lag_p99_seconds")!).toBeGreaterThan(0);
    expect(s.has("nodejs_eventloop_lag_seconds")).toBe(true);
  });

  test("one registry per call: two processes' worth of metrics never share counters", async () => {
    const a = createMetrics({}, { processMetrics: false });
    const b = createMetrics({}, { processMetrics: false });
    a.tasksEnqueued.inc({ priority: "high" });
    expect(await value(a, `agentq_tasks_enqueued_total{priority="high"}`)).toBe(1);
    expect(await value(b, `agentq_tasks_enqueued_total{priority="high"}`)).toBe(0);
  });
});

describe("TaskTelemetry", () => {
  test("each event moves its counters once and writes one log line with the task's fields", async () => {
    const { lines, logger } = captureLogs();
    const metrics = createMetrics({}, { processMetrics: false });
    const t = new TaskTelemetry(metrics, logger);
    const ref = { task_id: "t1", agent_id: "a1", worker_id: "w1", attempt: 1, priority: "high" as const };
    t.enqueued({ task_id: "t1", agent_id: "a1", priority: "high" });
    t.started({ ...ref, wait_ms: 1500 });
    t.finished({ ...ref, outcome: "completed", duration_ms: 250 });
    t.finished({ ...ref, task_id: "t2", outcome: "failed", duration_ms: 10, error: "boom" });
    t.finished({ ...ref, task_id: "t3", outcome: "cancelled" }, "pending");
    t.finished({ ...ref, task_id: "t4", outcome: "cancelled", duration_ms: 5 });
    t.finished({ ...ref, task_id: "t5", outcome: "timeout", duration_ms: 30_000 });
    t.retried({ ...ref, task_id: "t6", reason: "thread_crash" });
    t.retried({ ...ref, task_id: "t7", reason: "lease_expired" });
    t.redispatched({ task_id: "t8" });
    t.handedBack({ ...ref, task_id: "t9" });
    t.released({ ...ref, task_id: "t10", reason: "lease_lost" });
    t.leaseExpired(0);
    t.leaseExpired(2);

    const s = samples(await metrics.registry.metrics());
    expect(s.get(`agentq_tasks_enqueued_total{priority="high"}`)).toBe(1);
    expect(s.get(`agentq_task_wait_seconds_count{priority="high"}`)).toBe(1);
    expect(s.get(`agentq_task_wait_seconds_sum{priority="high"}`)).toBe(1.5);
    expect(s.get(`agentq_task_wait_seconds_bucket{le="1",priority="high"}`)).toBe(0);
    expect(s.get(`agentq_task_wait_seconds_bucket{le="2.5",priority="high"}`)).toBe(1);
    expect(s.get(`agentq_tasks_finished_total{outcome="completed"}`)).toBe(1);
    expect(s.get(`agentq_tasks_finished_total{outcome="failed"}`)).toBe(1);
    expect(s.get(`agentq_tasks_finished_total{outcome="cancelled"}`)).toBe(2);
    expect(s.get(`agentq_tasks_finished_total{outcome="timeout"}`)).toBe(1);
    // A pending task cancelled never ran: no run time.
    expect(s.get(`agentq_task_run_seconds_count{outcome="cancelled"}`)).toBe(1);
    expect(s.get(`agentq_task_run_seconds_sum{outcome="completed"}`)).toBe(0.25);
    expect(s.get(`agentq_task_run_seconds_bucket{le="30",outcome="timeout"}`)).toBe(1);
    expect(s.get(`agentq_task_cancellations_total{state="pending"}`)).toBe(1);
    expect(s.get(`agentq_task_cancellations_total{state="running"}`)).toBe(1);
    expect(s.get(`agentq_tasks_recovered_total{reason="thread_crash"}`)).toBe(1);
    expect(s.get(`agentq_tasks_recovered_total{reason="lease_expired"}`)).toBe(1);
    expect(s.get(`agentq_tasks_recovered_total{reason="redispatched"}`)).toBe(1);
    expect(s.get("agentq_lease_expiries_total")).toBe(2);

    expect(lines.map((l) => l.event)).toEqual([
      "task_enqueued",
      "task_started",
      "task_completed",
      "task_failed",
      "task_cancelled",
      "task_cancelled",
      "task_timeout",
      "task_retried",
      "task_retried",
      "task_recovered",
      "task_handed_back",
      "task_released",
    ]);
    expect(lines[1]).toMatchObject({ msg: "task started", task_id: "t1", agent_id: "a1", worker_id: "w1", attempt: 1, wait_ms: 1500, level: 30 });
    expect(lines[2]).toMatchObject({ msg: "task completed", duration_ms: 250 });
    expect(lines[3]).toMatchObject({ msg: "task failed", error: "boom", level: 40 });
    expect(lines[4]).not.toHaveProperty("error");
    expect(lines[10]).toMatchObject({ msg: "task handed back", reason: "shutdown" });
    expect(lines[9]).toMatchObject({ task_id: "t8", reason: "redispatched" });
  });
});

describe("HTTP helpers", () => {
  test("request ids: a sane incoming id is kept, anything else is replaced by a UUID", () => {
    for (const ok of ["abc", "0f8fad5b-d9cb-469f-a165-70867728950e", "01HZY3J5N8", "Root=1-5759e988-bd862e3fe1be46a994272793", "a".repeat(128)])
      expect(requestIdFrom(ok)).toBe(ok);
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const bad of [null, undefined, "", "a".repeat(129), "has space", 'quote"d', "new\nline", "<script>", "ü"])
      expect(requestIdFrom(bad)).toMatch(uuid);
    expect(requestIdFrom(null)).not.toBe(requestIdFrom(null));
  });

  test("method and status labels are bounded", () => {
    expect(methodLabel("get")).toBe("GET");
    expect(methodLabel("DELETE")).toBe("DELETE");
    expect(methodLabel("PROPFIND")).toBe("OTHER");
    expect(statusCode(202)).toBe(202);
    expect(statusCode("Not Found")).toBe(404);
    expect(statusCode("418")).toBe(418);
    expect(statusCode("nonsense")).toBe(500);
    expect(statusCode(undefined)).toBe(200);
  });

  test("RouteMatcher maps a concrete path to its template, and nothing else", () => {
    const routes = [
      { method: "GET", path: "/api/v1/agents/:agent_id" },
      { method: "GET", path: "/api/v1/agents/search" },
      { method: "POST", path: "/api/v1/agents/:agent_id/coverage/refresh" },
      { method: "GET", path: "/files/*" },
      { method: "GET", path: "/opt/:id?" },
      { method: "ALL", path: "/any" },
      { method: "GET", path: "/a.b" },
    ];
    const list = [...routes];
    const m = new RouteMatcher(() => list);
    expect(m.match("GET", "/api/v1/agents/123")).toBe("/api/v1/agents/:agent_id");
    expect(m.match("get", "/api/v1/agents/123/")).toBe("/api/v1/agents/:agent_id");
    expect(m.match("POST", "/api/v1/agents/x/coverage/refresh")).toBe("/api/v1/agents/:agent_id/coverage/refresh");
    expect(m.match("GET", "/api/v1/agents/x/coverage/refresh")).toBeNull();
    expect(m.match("GET", "/api/v1/agents/1/2")).toBeNull();
    expect(m.match("GET", "/files/a/b/c")).toBe("/files/*");
    expect(m.match("GET", "/opt/")).toBe("/opt/:id?");
    expect(m.match("PUT", "/any")).toBe("/any");
    expect(m.match("GET", "/a.b")).toBe("/a.b");
    expect(m.match("GET", "/axb")).toBeNull();
    expect(m.match("GET", "/nope")).toBeNull();
    // Routes added later are picked up.
    list.push({ method: "GET", path: "/nope" });
    expect(m.match("GET", "/nope")).toBe("/nope");
  });
});
