/**
 * The alert rules (ops/prometheus/alerts.yml): promtool accepts them and their unit tests
 * pass, every alert has a case where it fires and one where it does not, and every alert
 * carries severity, summary, description and a runbook_url whose anchor is a real section
 * of docs/runbook.md.
 */
import { describe, expect, test } from "bun:test";
import { markdownAnchors, promtool, readYaml, repoPath } from "./support.ts";

const RUNBOOK_URL = "https://github.com/agentq/agentq/blob/main/docs/runbook.md";

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface AlertTestCase {
  alertname: string;
  eval_time: string;
  exp_alerts?: unknown[];
}

const rules = await readYaml<{ groups: { name: string; rules: Rule[] }[] }>("ops/prometheus/alerts.yml");
const unitTests = await readYaml<{ rule_files: string[]; tests: { name: string; alert_rule_test?: AlertTestCase[] }[] }>(
  "ops/prometheus/alerts.test.yml",
);
const runbook = await Bun.file(repoPath("docs/runbook.md")).text();
const anchors = markdownAnchors(runbook);
const alerts = rules.groups.flatMap((g) => g.rules).filter((r): r is Rule & { alert: string } => r.alert !== undefined);

describe("alert rules", () => {
  test("pass promtool check rules", () => {
    const { code, output } = promtool("check", "rules", "ops/prometheus/alerts.yml");
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining("SUCCESS") });
  });

  test("pass their promtool unit tests", () => {
    const { code, output } = promtool("test", "rules", "ops/prometheus/alerts.test.yml");
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining("SUCCESS") });
  });

  test("cover the issue's alerts, each named once", () => {
    const names = alerts.map((a) => a.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const required of [
      "AgentqTaskFailureRateHigh",
      "AgentqQueueBacklogHigh",
      "AgentqWebhookFailureRateHigh",
      "AgentqWorkerCrashLoop",
      "AgentqTaskStuckRunning",
      "AgentqNoLiveWorkers",
      "AgentqOldestPendingTaskTooOld",
    ])
      expect(names).toContain(required);
  });

  test("keep the plan's thresholds", () => {
    const expr = (name: string) => alerts.find((a) => a.alert === name)!.expr;
    expect(expr("AgentqTaskFailureRateHigh")).toMatch(/\[1h\]\)\)\s*\)\s*> 0\.10/);
    expect(expr("AgentqQueueBacklogHigh")).toContain("sum(max by (priority) (agentq_queue_depth)) > 1000");
    expect(expr("AgentqWebhookFailureRateHigh")).toMatch(/\[1h\]\)\)\s*\)\s*> 0\.20/);
    expect(expr("AgentqWorkerCrashLoop")).toContain("sum(increase(agentq_worker_restarts_total[10m])) > 3");
  });

  test("each carry severity, summary, description and a runbook_url to a real runbook section", () => {
    for (const alert of alerts) {
      const { labels = {}, annotations = {} } = alert;
      expect({ alert: alert.alert, severity: ["critical", "warning"].includes(labels.severity ?? "") }).toEqual({
        alert: alert.alert,
        severity: true,
      });
      expect(annotations.summary?.length ?? 0).toBeGreaterThan(0);
      expect(annotations.description?.length ?? 0).toBeGreaterThan(0);
      // The section is named after the alert.
      expect(annotations.runbook_url).toBe(`${RUNBOOK_URL}#${alert.alert.toLowerCase()}`);
      expect({ alert: alert.alert, section: anchors.has(alert.alert.toLowerCase()) }).toEqual({ alert: alert.alert, section: true });
    }
  });

  test("each have a unit test where they fire and one where they do not", () => {
    expect(unitTests.rule_files).toEqual(["alerts.yml"]);
    const cases = unitTests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      const own = cases.filter((c) => c.alertname === alert.alert);
      const firing = own.some((c) => (c.exp_alerts ?? []).length > 0);
      const silent = own.some((c) => (c.exp_alerts ?? []).length === 0);
      expect({ alert: alert.alert, firing, silent }).toEqual({ alert: alert.alert, firing: true, silent: true });
    }
  });
});

describe("runbook", () => {
  test("has the operations sections the alerts and the issue point to", () => {
    for (const section of [
      "stuck-tasks",
      "redis-data-loss",
      "postgresql-failover",
      "webhook-endpoint-down",
      "scaling-workers-and-supervisors-out",
      "rolling-back-a-release",
      "draining-a-supervisor",
    ])
      expect({ section, present: anchors.has(section) }).toEqual({ section, present: true });
  });

  test("links only to sections that exist", () => {
    const links = [...runbook.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(10);
    expect(links.filter((l) => !anchors.has(l))).toEqual([]);
  });

  test("names the real Redis queue keys", async () => {
    const { queueKeys } = await import("../../src/queue/keys.ts");
    const keys = queueKeys("$P");
    expect(runbook).toContain(keys.queue("low").replace(":low", ":$p"));
    expect(runbook).toContain(keys.capacity);
  });
});
