/**
 * The deployment files agree with the code and with each other, checked without a Docker
 * engine or systemd: docker-compose.yml (services, healthchecks, mounts, environment), the
 * Dockerfile, the systemd units (stop timeout above the drain deadline), the Prometheus
 * scrape config and the Grafana provisioning.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { DEFAULTS, ENV_NAMES } from "../../src/config.ts";
import { durationMs, promtool, readYaml, repoPath } from "./support.ts";

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  depends_on?: Record<string, { condition: string }>;
}
const compose = await readYaml<{ services: Record<string, ComposeService>; volumes: Record<string, unknown> }>("docker-compose.yml");
const services = compose.services;
const configVariables = new Set(Object.values(ENV_NAMES));
/** What a draining supervisor may take by default: the drain deadline, then the cancel grace. */
const drainBudgetMs = DEFAULTS.drainDeadlineMs + DEFAULTS.cancelGraceMs;

const unit = async (name: string) => {
  const text = await Bun.file(repoPath("ops/systemd", name)).text();
  const settings = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) settings.set(match[1]!, [...(settings.get(match[1]!) ?? []), match[2]!]);
  }
  return (key: string) => settings.get(key) ?? [];
};

describe("docker-compose.yml", () => {
  test("runs PostgreSQL 15, Redis 7, the API, the supervisor, Prometheus and Grafana, each with a healthcheck", () => {
    expect(Object.keys(services).sort()).toEqual(["api", "grafana", "postgres", "prometheus", "redis", "supervisor"]);
    expect(services.postgres!.image).toBe("postgres:15");
    expect(services.redis!.image).toBe("redis:7");
    for (const [name, service] of Object.entries(services))
      expect({ name, healthcheck: (service.healthcheck?.test.length ?? 0) > 0 }).toEqual({ name, healthcheck: true });
  });

  test("starts the API and the supervisor from the Dockerfile after PostgreSQL and Redis are healthy", () => {
    expect(services.api!.command).toEqual(["bun", "run", "api"]);
    expect(services.supervisor!.command!.slice(0, 4)).toEqual(["bun", "run", "supervisor", "--workers"]);
    for (const name of ["api", "supervisor"]) {
      const service = services[name]!;
      expect(service.build).toBe(".");
      expect(service.depends_on?.postgres?.condition).toBe("service_healthy");
      expect(service.depends_on?.redis?.condition).toBe("service_healthy");
    }
  });

  test("sets only real agentq configuration variables", () => {
    for (const name of ["api", "supervisor"]) {
      // NODE_ENV is read by Elysia, not by src/config.ts (test/ops/production-mode.test.ts checks it).
      const unknown = Object.keys(services[name]!.environment ?? {}).filter((v) => !configVariables.has(v) && v !== "NODE_ENV");
      expect({ name, unknown }).toEqual({ name, unknown: [] });
    }
  });

  test("gives the supervisor a stop grace period above the drain deadline plus the cancel grace", () => {
    const env = services.supervisor!.environment!;
    const budget = Number(env.AGENTQ_DRAIN_DEADLINE_MS) + Number(env.AGENTQ_CANCEL_GRACE_MS);
    expect(budget).toBe(drainBudgetMs);
    expect(durationMs(services.supervisor!.stop_grace_period!)).toBeGreaterThan(budget + 5000);
  });

  test("mounts only files that exist, and named volumes that are declared", () => {
    for (const [name, service] of Object.entries(services))
      for (const volume of service.volumes ?? []) {
        const source = volume.split(":")[0]!;
        const ok = source.startsWith("./") ? existsSync(repoPath(source)) : source in compose.volumes;
        expect({ name, volume, ok }).toEqual({ name, volume, ok: true });
      }
  });

  test("gives Prometheus the config directory and Grafana the provisioning and the dashboard at the provider's path", async () => {
    expect(services.prometheus!.volumes).toContain("./ops/prometheus:/etc/prometheus:ro");
    expect(services.prometheus!.command).toContain("--config.file=/etc/prometheus/prometheus.yml");
    expect(services.grafana!.volumes).toContain("./ops/grafana/provisioning:/etc/grafana/provisioning:ro");
    const providers = await readYaml<{ providers: { type: string; options: { path: string } }[] }>(
      "ops/grafana/provisioning/dashboards/agentq.yml",
    );
    const provider = providers.providers[0]!;
    expect(provider.type).toBe("file");
    expect(services.grafana!.volumes).toContain(`./ops/grafana/dashboards:${provider.options.path}:ro`);
  });
});

describe("Prometheus scrape config", () => {
  test("passes promtool check config", () => {
    const { code, output } = promtool("check", "config", "ops/prometheus/prometheus.yml");
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining("SUCCESS") });
  });

  test("scrapes agentq-api and agentq-supervisor on their default ports and loads the alert rules", async () => {
    const config = await readYaml<{
      rule_files: string[];
      scrape_configs: { job_name: string; metrics_path?: string; dns_sd_configs?: { names: string[]; type: string; port: number }[] }[];
    }>("ops/prometheus/prometheus.yml");
    expect(config.rule_files).toEqual(["alerts.yml"]);
    const job = (name: string) => config.scrape_configs.find((j) => j.job_name === name)!;
    expect(job("agentq-api").metrics_path).toBe("/metrics");
    expect(job("agentq-api").dns_sd_configs![0]).toEqual({ names: ["api"], type: "A", port: DEFAULTS.port });
    expect(job("agentq-supervisor").metrics_path).toBe("/metrics");
    expect(job("agentq-supervisor").dns_sd_configs![0]).toEqual({
      names: ["supervisor"],
      type: "A",
      port: DEFAULTS.supervisorMetricsPort,
    });
  });
});

describe("Dockerfile", () => {
  test("builds on the pinned Bun, installs runtime dependencies only, and copies what exists", async () => {
    const dockerfile = await Bun.file(repoPath("Dockerfile")).text();
    const pkg = (await Bun.file(repoPath("package.json")).json()) as { engines: { bun: string } };
    const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(bases.length).toBeGreaterThan(0);
    for (const base of bases) expect(base).toBe(`oven/bun:${pkg.engines.bun}`);
    expect(dockerfile).toContain("bun install --frozen-lockfile --production");
    for (const [, sources] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm))
      for (const source of sources!.split(/\s+/)) expect({ source, exists: existsSync(repoPath(source)) }).toEqual({ source, exists: true });
  });

  test("copies every patch that bun install applies before it runs", async () => {
    const dockerfile = await Bun.file(repoPath("Dockerfile")).text();
    const pkg = (await Bun.file(repoPath("package.json")).json()) as { patchedDependencies?: Record<string, string> };
    const install = dockerfile.indexOf("RUN bun install");
    expect(install).toBeGreaterThan(0);
    const copied = [...dockerfile.slice(0, install).matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    const patches = Object.values(pkg.patchedDependencies ?? {});
    expect(patches.length).toBeGreaterThan(0);
    for (const patch of patches) expect({ patch, copied: copied.some((c) => patch === c || patch.startsWith(`${c}/`)) }).toEqual({ patch, copied: true });
  });
});

describe("systemd units", () => {
  test("run bun from the release directory with the environment file, as a dedicated user, hardened", async () => {
    for (const [name, command] of [
      ["agentq-api.service", "/usr/local/bin/bun run api"],
      ["agentq-supervisor.service", "/usr/local/bin/bun run supervisor --workers ${WORKERS}"],
    ] as const) {
      const get = await unit(name);
      expect(get("ExecStart")).toEqual([command]);
      expect(get("WorkingDirectory")).toEqual(["/opt/agentq"]);
      expect(get("EnvironmentFile")).toEqual(["/etc/agentq/agentq.env"]);
      expect(get("User")).toEqual(["agentq"]);
      expect(get("Restart")).toEqual(["on-failure"]);
      expect(get("KillSignal")).toEqual(["SIGTERM"]);
      for (const [key, value] of [
        ["NoNewPrivileges", "yes"],
        ["ProtectSystem", "strict"],
        ["PrivateTmp", "yes"],
        ["ProtectHome", "yes"],
      ])
        expect({ name, key, value: get(key!) }).toEqual({ name, key, value: [value!] });
      // JavaScriptCore's JIT needs writable and executable memory.
      expect(get("MemoryDenyWriteExecute")).toEqual([]);
    }
  });

  test("give the supervisor a stop timeout above the drain deadline plus the cancel grace", async () => {
    const get = await unit("agentq-supervisor.service");
    expect(durationMs(get("TimeoutStopSec")[0]!)).toBeGreaterThan(drainBudgetMs + 5000);
    // `--workers ${WORKERS}` must never expand to nothing.
    expect(get("Environment")).toContain("WORKERS=2");
  });

  test("come with an environment file example that sets only real configuration variables", async () => {
    const text = await Bun.file(repoPath("ops/systemd/agentq.env.example")).text();
    const names = [...text.matchAll(/^#?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(5);
    expect(names.filter((n) => !configVariables.has(n))).toEqual([]);
  });
});
