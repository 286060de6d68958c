/**
 * A real scrape: Debian's `prometheus` runs on loopback (random port, temporary storage,
 * 1 s scrape interval) and scrapes a real API process (`bun src/cli/api.ts`) and a real
 * standalone supervisor (`bun src/cli/supervisor.ts`, its own metrics port). Tasks run through
 * the API; the counters are read back through Prometheus's HTTP API, waiting on each value
 * (polling the query API with a deadline) rather than sleeping. Then: `promtool check metrics`
 * on the live /metrics bodies, and every agentq_* name used by the ops alert rules and the
 * Grafana dashboards exists in them.
 *
 * Needs `prometheus` and `promtool` on PATH (Debian package `prometheus`; .ci/run installs it).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestContext, TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { FAST_ENGINE } from "../helpers/engine.ts";
import { families, freePort } from "../helpers/metrics.ts";
import { createCorpus, type Corpus } from "./support.ts";
import pkg from "../../package.json" with { type: "json" };

const REPO = new URL("../../", import.meta.url).pathname;
const ALERTS_FILE = join(REPO, "ops/prometheus/alerts.yml");
const DASHBOARDS_DIR = join(REPO, "ops/grafana/dashboards");

type LogLine = Record<string, unknown>;

/** A child process whose stdout is JSON log lines (pino), read continuously. */
class Child {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number>;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
  ) {
    this.exited = proc.exited;
    void this.read(proc.stdout);
    void this.read(proc.stderr, true);
  }

  private async read(stream: ReadableStream<Uint8Array>, stderr = false) {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.trim()) continue;
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ raw: line, stderr });
        }
        for (const w of this.waiters) w();
      }
    }
  }

  /** Resolves with the first line matching `predicate` (past or future), or fails after `ms` or on exit. */
  waitForLine(predicate: (l: LogLine) => boolean, ms = 30_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.lines.find(predicate);
        if (!hit) return;
        done();
        resolve(hit);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no matching log line within ${ms} ms; last lines:\n${this.tail()}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      void this.exited.then((code) => {
        check();
        done();
        reject(new Error(`${this.name} exited (${code}); last lines:\n${this.tail()}`));
      });
      check();
    });
  }

  tail(n = 15) {
    return this.lines
      .slice(-n)
      .map((l) => JSON.stringify(l))
      .join("\n");
  }

  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

function spawn(name: string, cmd: string[], env: Record<string, string>): Child {
  const proc = Bun.spawn(cmd, { cwd: REPO, env: { ...(process.env as Record<string, string>), ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return new Child(name, proc);
}

let ctx: TestContext;
let corpus: Corpus;
let api: Child;
let supervisor: Child | undefined;
let prometheus: Child;
let tmp: string;
let apiUrl: string;
let promUrl: string;
let supervisorPort: number;

const agentqEnv = () => ({
  DATABASE_URL: ctx.config.databaseUrl,
  REDIS_URL: ctx.config.redisUrl,
  AGENTQ_REDIS_PREFIX: ctx.config.redisPrefix,
  AGENTQ_API_KEYS: TEST_API_KEY,
  HOST: "127.0.0.1",
  LOG_LEVEL: "info",
  AGENTQ_LEASE_MS: String(FAST_ENGINE.leaseMs),
  AGENTQ_RECONCILE_EVERY_MS: String(FAST_ENGINE.reconcileEveryMs),
});

beforeAll(async () => {
  for (const bin of ["prometheus", "promtool"])
    if (!Bun.which(bin)) throw new Error(`${bin} is not installed: apt-get install prometheus (.ci/run does it)`);
  ctx = await createTestContext(FAST_ENGINE);
  corpus = await createCorpus(ctx);

  // The API on a random port (PORT=0); it logs the port it got.
  api = spawn("api", ["bun", "src/cli/api.ts"], { ...agentqEnv(), PORT: "0" });
  const listening = await api.waitForLine((l) => l.msg === "api listening; docs at /swagger");
  apiUrl = `http://127.0.0.1:${listening.port}`;
  supervisorPort = freePort();

  tmp = mkdtempSync(join(tmpdir(), "agentq-prometheus-"));
  const promPort = freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    scrape_configs: [
      { job_name: "agentq-api", metrics_path: "/metrics", static_configs: [{ targets: [`127.0.0.1:${listening.port}`] }] },
      { job_name: "agentq-supervisor", metrics_path: "/metrics", static_configs: [{ targets: [`127.0.0.1:${supervisorPort}`] }] },
    ],
  };
  // JSON is YAML: Prometheus reads it as is.
  writeFileSync(join(tmp, "prometheus.yml"), JSON.stringify(config, null, 2));
  prometheus = spawn("prometheus", [
    "prometheus",
    `--config.file=${join(tmp, "prometheus.yml")}`,
    `--storage.tsdb.path=${join(tmp, "data")}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    "--log.level=warn",
  ], {});
  await waitFor("Prometheus to be ready", async () => ((await fetch(`${promUrl}/-/ready`).catch(() => null))?.ok ? true : undefined));
}, 60_000);

afterAll(async () => {
  await Promise.all([supervisor?.stop(), api?.stop(), prometheus?.stop()]);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  await ctx?.close();
});

/** Polls `check` every 250 ms until it returns a value, or fails after `timeoutMs`. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
    await Bun.sleep(250);
  }
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query through Prometheus's HTTP API. */
async function query(promql: string): Promise<Sample[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: Sample[] } };
  if (body.status !== "success") throw new Error(`query ${promql} failed: ${body.error}`);
  return body.data.result;
}

/** Waits until the query's single value equals `expected` (as Prometheus has scraped it). */
async function expectValue(promql: string, expected: number, timeoutMs = 30_000) {
  let seen: string[] = [];
  await waitFor(
    `${promql} == ${expected}`,
    async () => {
      const r = await query(promql);
      seen = r.map((s) => s.value[1]);
      return r.length === 1 && Number(r[0]!.value[1]) === expected ? true : undefined;
    },
    timeoutMs,
  ).catch((error) => {
    throw new Error(`${(error as Error).message}; last seen: ${seen.join(", ") || "no series"}`);
  });
}

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${apiUrl}/api/v1/${path}`, {
    method,
    headers: { "x-api-key": TEST_API_KEY, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function refresh(priority: string): Promise<string> {
  const res = await call("POST", `agents/${await corpus.agent()}/coverage/refresh`, { priority });
  expect(res.status).toBe(202);
  return res.body.task_id as string;
}

async function startSupervisor(): Promise<Child> {
  supervisor = spawn("supervisor", ["bun", "src/cli/supervisor.ts", "--workers", "2", "--concurrency", "3"], {
    ...agentqEnv(),
    AGENTQ_SUPERVISOR_METRICS_PORT: String(supervisorPort),
  });
  await supervisor.waitForLine((l) => l.msg === "supervisor metrics listening on /metrics" && l.port === supervisorPort);
  return supervisor;
}

const liveBodies = async () => {
  const bodies: Record<string, string> = {};
  for (const [name, url] of [
    ["api", `${apiUrl}/metrics`],
    ["supervisor", `http://127.0.0.1:${supervisorPort}/metrics`],
  ] as const) {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    bodies[name] = await res.text();
  }
  return bodies;
};

describe("a real Prometheus scraping agentq", () => {
  test("reads back the queue, the task counters and histograms, the workers and the HTTP metrics", async () => {
    await expectValue(`up{job="agentq-api"}`, 1);

    // Before any supervisor runs: three tasks wait, a fourth is cancelled while pending (by the API).
    const tasks = [await refresh("high"), await refresh("medium"), await refresh("low")];
    const doomed = await refresh("medium");
    expect((await call("DELETE", `tasks/${doomed}`)).status).toBe(204);
    for (const p of ["high", "medium", "low"]) await expectValue(`agentq_queue_depth{job="agentq-api",priority="${p}"}`, 1);
    await expectValue(`agentq_tasks_enqueued_total{job="agentq-api",priority="medium"}`, 2);
    await expectValue(`agentq_tasks_enqueued_total{job="agentq-api",priority="high"}`, 1);
    await expectValue(`agentq_tasks_finished_total{job="agentq-api",outcome="cancelled"}`, 1);
    await expectValue(`agentq_task_cancellations_total{job="agentq-api",state="pending"}`, 1);
    await waitFor("an oldest pending age", async () =>
      Number((await query(`agentq_oldest_pending_task_age_seconds{job="agentq-api"}`))[0]?.value[1]) > 0 ? true : undefined,
    );
    await expectValue(`up{job="agentq-supervisor"}`, 0);

    // A standalone supervisor starts on its own metrics port and runs them.
    const sup = await startSupervisor();
    await expectValue(`up{job="agentq-supervisor"}`, 1);
    await expectValue(`agentq_tasks_finished_total{job="agentq-supervisor",outcome="completed"}`, 3);
    await expectValue(`sum(agentq_task_wait_seconds_count{job="agentq-supervisor"})`, 3);
    await expectValue(`agentq_task_wait_seconds_count{job="agentq-supervisor",priority="high"}`, 1);
    await expectValue(`agentq_task_run_seconds_count{job="agentq-supervisor",outcome="completed"}`, 3);
    await expectValue(`sum(agentq_tasks_finished_total{job="agentq-supervisor",outcome!="completed"})`, 0);
    // Task slots: 2 threads x 3 tasks each (--concurrency 3).
    await expectValue(`agentq_workers{job="agentq-supervisor"}`, 6);
    await expectValue(`agentq_workers_busy{job="agentq-supervisor"}`, 0);
    await expectValue(`agentq_worker_utilisation_ratio{job="agentq-supervisor"}`, 0);
    await expectValue(`sum(agentq_queue_depth{job="agentq-api"})`, 0);
    await expectValue(`sum(agentq_queue_depth{job="agentq-supervisor"})`, 0);
    await expectValue(`agentq_tasks_overdue{job="agentq-supervisor"}`, 0);
    // The API process has no supervisor: no worker gauges from it.
    expect(await query(`agentq_workers{job="agentq-api"}`)).toEqual([]);
    // HTTP metrics by route template.
    await expectValue(`agentq_http_requests_total{job="agentq-api",method="POST",route="/api/v1/agents/:agent_id/coverage/refresh",status="202"}`, 4);
    await expectValue(`agentq_http_requests_total{job="agentq-api",method="DELETE",route="/api/v1/tasks/:task_id",status="204"}`, 1);
    expect((await query(`count(agentq_http_requests_total{route=~".*[0-9a-f]{8}-.*"})`)).length).toBe(0);
    // Histograms answer quantile queries.
    const p95 = await query(`histogram_quantile(0.95, sum by (le) (agentq_task_run_seconds_bucket{job="agentq-supervisor",outcome="completed"}))`);
    expect(Number(p95[0]?.value[1])).toBeGreaterThan(0);
    // Build info and process metrics of both processes.
    for (const job of ["agentq-api", "agentq-supervisor"]) {
      const info = await query(`agentq_build_info{job="${job}"}`);
      expect(info.map((s) => [s.metric.version, s.metric.bun_version, s.value[1]])).toEqual([[pkg.version, Bun.version, "1"]]);
      expect(Number((await query(`process_resident_memory_bytes{job="${job}"}`))[0]?.value[1])).toBeGreaterThan(0);
    }
    const busy = Number((await query(`agentq_worker_busy_seconds_total{job="agentq-supervisor"}`))[0]?.value[1]);
    expect(busy).toBeGreaterThan(0);

    // The supervisor logged each task's lifecycle, with its fields, in its own process.
    for (const id of tasks) {
      const done = await sup.waitForLine((l) => l.event === "task_completed" && l.task_id === id);
      expect(done).toMatchObject({ attempt: 1, worker_id: expect.any(String), agent_id: expect.any(String) });
      expect(done.duration_ms).toBeGreaterThanOrEqual(0);
      expect(sup.lines.find((l) => l.event === "task_started" && l.task_id === id)).toMatchObject({ worker_id: done.worker_id });
    }
    // ...and the API logged the enqueues and every request with its request id.
    expect(api.lines.filter((l) => l.event === "task_enqueued").length).toBe(4);
    expect(api.lines.find((l) => l.event === "task_cancelled")).toMatchObject({ task_id: doomed });
    const requestLine = api.lines.find((l) => l.msg === "request" && l.route === "/api/v1/agents/:agent_id/coverage/refresh");
    expect(requestLine?.request_id).toEqual(expect.any(String));
  }, 120_000);

  test("promtool check metrics passes on the live /metrics of the API and of the supervisor", async () => {
    if (!supervisor) await startSupervisor();
    for (const [name, body] of Object.entries(await liveBodies())) {
      const proc = Bun.spawn(["promtool", "check", "metrics"], { stdin: new Blob([body]), stdout: "pipe", stderr: "pipe" });
      const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      expect({ name, code, out, err }).toEqual({ name, code: 0, out: "", err: "" });
    }
  }, 60_000);

  test("every agentq metric the alert rules and the Grafana dashboards use exists in a live /metrics", async () => {
    if (!supervisor) await startSupervisor();
    // The ops files are written alongside (ops/prometheus, ops/grafana); a missing one is a failure.
    expect({ file: ALERTS_FILE, exists: existsSync(ALERTS_FILE) }).toEqual({ file: ALERTS_FILE, exists: true });
    expect({ dir: DASHBOARDS_DIR, exists: existsSync(DASHBOARDS_DIR) }).toEqual({ dir: DASHBOARDS_DIR, exists: true });
    const dashboards = readdirSync(DASHBOARDS_DIR).filter((f) => f.endsWith(".json"));
    expect(dashboards.length).toBeGreaterThan(0);

    const used = new Map<string, Set<string>>();
    const note = (file: string, expr: string) => {
      for (const [name] of expr.matchAll(/\bagentq_[a-z0-9_]+/g)) {
        const base = name.replace(/_(bucket|sum|count)$/, "");
        if (!used.has(base)) used.set(base, new Set());
        used.get(base)!.add(file);
      }
    };
    // Alert rules: every `expr`.
    const rules = Bun.YAML.parse(readFileSync(ALERTS_FILE, "utf8")) as { groups: { rules: { expr?: string }[] }[] };
    for (const group of rules.groups) for (const rule of group.rules) if (rule.expr) note("alerts.yml", String(rule.expr));
    // Dashboards: every query string (panel targets' `expr`, template variables' `query`/`definition`).
    const walk = (file: string, node: unknown) => {
      if (Array.isArray(node)) for (const n of node) walk(file, n);
      else if (node && typeof node === "object")
        for (const [key, value] of Object.entries(node)) {
          if (typeof value === "string" && (key === "expr" || key === "query" || key === "definition")) note(file, value);
          else walk(file, value);
        }
    };
    for (const file of dashboards) walk(file, JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), "utf8")));
    expect(used.size).toBeGreaterThan(5);

    const bodies = await liveBodies();
    const live = new Set([...families(bodies.api!), ...families(bodies.supervisor!)]);
    const missing = [...used].filter(([name]) => !live.has(name)).map(([name, files]) => `${name} (in ${[...files].join(", ")})`);
    expect(missing).toEqual([]);
  }, 60_000);
});
