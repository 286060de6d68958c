/**
 * The Grafana dashboard (ops/grafana/dashboards/agentq.json) imports as it is: valid JSON
 * in the classic model, unique panel ids, panels that do not overlap, every query bound to
 * the provisioned data source, and every PromQL expression accepted by promtool.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promtool, readYaml, repoPath } from "./support.ts";

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

const dashboard = (await Bun.file(repoPath("ops/grafana/dashboards/agentq.json")).json()) as {
  uid: string;
  id: unknown;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: unknown[] };
};
const provisioning = await readYaml<{ datasources: { uid: string; type: string; url: string }[] }>(
  "ops/grafana/provisioning/datasources/prometheus.yml",
);
const provisioned = provisioning.datasources[0]!;

/** Panels, including those inside collapsed rows. */
const allPanels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== "row");
const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ""));

describe("Grafana dashboard", () => {
  test("is a classic dashboard model with a fixed uid, no database id and schemaVersion 39", () => {
    expect(dashboard.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(dashboard.id).toBeNull();
    expect(dashboard.title.length).toBeGreaterThan(0);
    expect(dashboard.schemaVersion).toBe(39);
    expect(queryPanels.length).toBeGreaterThan(10);
  });

  test("has unique panel ids", () => {
    const ids = allPanels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test("lays panels out on the 24-column grid without overlaps", () => {
    for (const p of allPanels) {
      expect(p.gridPos.x).toBeGreaterThanOrEqual(0);
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
    }
    const overlaps: string[] = [];
    for (const [i, a] of allPanels.entries())
      for (const b of allPanels.slice(i + 1)) {
        const apart =
          a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
          b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
          a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
          b.gridPos.y + b.gridPos.h <= a.gridPos.y;
        if (!apart) overlaps.push(`${a.title} / ${b.title}`);
      }
    expect(overlaps).toEqual([]);
  });

  test("binds every panel and query to the provisioned Prometheus data source by uid", () => {
    expect(provisioned.type).toBe("prometheus");
    const expected = { type: "prometheus", uid: provisioned.uid };
    for (const panel of queryPanels) {
      expect({ panel: panel.title, datasource: panel.datasource }).toEqual({ panel: panel.title, datasource: expected });
      for (const target of panel.targets ?? [])
        expect({ panel: panel.title, datasource: target.datasource }).toEqual({ panel: panel.title, datasource: expected });
    }
    // No import-time placeholder (`${DS_...}`) anywhere: the file imports as it is.
    expect(JSON.stringify(dashboard)).not.toContain("${DS_");
  });

  test("gives every query a PromQL expression and a unique refId within its panel", () => {
    for (const panel of queryPanels) {
      const targets = panel.targets ?? [];
      expect({ panel: panel.title, targets: targets.length > 0 }).toEqual({ panel: panel.title, targets: true });
      for (const target of targets) expect({ panel: panel.title, expr: (target.expr ?? "").trim().length > 0 }).toEqual({ panel: panel.title, expr: true });
      const refIds = targets.map((t) => t.refId);
      expect(new Set(refIds).size).toBe(refIds.length);
    }
  });

  test("shows throughput, failure rate, queue depth, wait and run p50/p95/p99, per-agent limits, workers, webhooks and HTTP", () => {
    const all = exprs.join("\n");
    for (const metric of [
      "agentq_tasks_enqueued_total",
      "agentq_tasks_finished_total",
      "agentq_queue_depth",
      "agentq_oldest_pending_task_age_seconds",
      "agentq_workers",
      "agentq_workers_busy",
      "agentq_worker_utilisation_ratio",
      "agentq_worker_busy_seconds_total",
      "agentq_worker_restarts_total",
      "agentq_tasks_overdue",
      "agentq_tasks_held_by_agent_limit",
      "agentq_tasks_deferred_total",
      "agentq_webhook_deliveries_total",
      "agentq_webhook_attempts_total",
      "agentq_webhook_attempt_duration_seconds_bucket",
      "agentq_http_requests_total",
      "agentq_http_request_duration_seconds_bucket",
      "agentq_build_info",
    ])
      expect({ metric, used: all.includes(metric) }).toEqual({ metric, used: true });
    expect(all).toContain('agentq_tasks_finished_total{outcome=~"failed|timeout"}');
    expect(all).toContain("max by (priority) (agentq_queue_depth)");
    for (const histogram of ["agentq_task_wait_seconds", "agentq_task_run_seconds"])
      for (const q of ["0.5", "0.95", "0.99"])
        expect(all).toContain(`histogram_quantile(${q}, sum by (le) (rate(${histogram}_bucket[$__rate_interval])))`);
  });

  test("computes every quantile from the rate of _bucket series summed by le", () => {
    const quantiles = exprs.filter((e) => e.includes("histogram_quantile"));
    expect(quantiles.length).toBeGreaterThan(0);
    for (const expr of quantiles) {
      const match = /^histogram_quantile\(0?\.\d+, sum by \(([^)]*)\) \(rate\(agentq_\w+_bucket\[\$__rate_interval\]\)\)\)$/.exec(expr);
      expect({ expr, ok: match !== null && match[1]!.split(",").map((s) => s.trim()).includes("le") }).toEqual({ expr, ok: true });
    }
  });

  test("has expressions that promtool parses (Grafana's interval variables replaced by durations)", () => {
    const rules = exprs.map((expr, i) => ({
      record: `dashboard:expr_${i}`,
      expr: expr.replaceAll("$__rate_interval", "1m").replaceAll("$__interval", "15s").replaceAll("$__range", "1h"),
    }));
    for (const rule of rules) expect(rule.expr).not.toContain("$");
    const dir = mkdtempSync(join(tmpdir(), "agentq-dashboard-"));
    try {
      const file = join(dir, "dashboard-exprs.yml");
      // JSON is YAML: promtool reads it as a rule file.
      writeFileSync(file, JSON.stringify({ groups: [{ name: "dashboard", rules }] }));
      const { code, output } = promtool("check", "rules", file);
      expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining(`SUCCESS: ${rules.length} rules found`) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
