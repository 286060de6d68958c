/**
 * The processes under test, each as an operator runs it: `bun src/cli/api.ts` and
 * `bun src/cli/supervisor.ts --workers W --concurrency C` (its worker threads live in the
 * supervisor's process, so its VmRSS includes them). Ready when their /healthz answers;
 * their warnings and errors (JSON log lines at level >= 40) are kept to report.
 */
import type { Subprocess } from "bun";
import { freePort, lines } from "../processes.ts";

const REPO = new URL("../../", import.meta.url).pathname;

export interface Service {
  name: string;
  proc: Subprocess<"ignore", "pipe", "inherit">;
  /** http://127.0.0.1:<port> */
  origin: string;
  /** Log lines at warn or above, the first MAX_KEPT of them, and how many there were. */
  warnings: string[];
  warningCount: number;
  /** Log message -> how many lines at warn or above carried it. */
  warningsByMessage: Map<string, number>;
  stop(): Promise<number>;
}

const MAX_KEPT = 20;

async function waitHealthy(service: Service, path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | null = null;
  void service.proc.exited.then((code) => (exited = code));
  for (;;) {
    if (exited !== null) throw new Error(`${service.name} exited with ${exited} before it was ready: ${service.warnings.join("\n")}`);
    try {
      const res = await fetch(`${service.origin}${path}`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${service.name} was not ready after ${timeoutMs} ms`);
    await Bun.sleep(100);
  }
}

async function spawnService(name: string, argv: string[], env: Record<string, string>, port: number, healthPath: string): Promise<Service> {
  const proc = Bun.spawn(["bun", ...argv], {
    env: { ...(process.env as Record<string, string>), ...env },
    cwd: REPO,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const service: Service = {
    name,
    proc,
    origin: `http://127.0.0.1:${port}`,
    warnings: [],
    warningCount: 0,
    warningsByMessage: new Map(),
    async stop() {
      proc.kill("SIGTERM");
      return proc.exited;
    },
  };
  lines(proc, (line) => {
    if (!/"level":(40|50|60)/.test(line)) return;
    service.warningCount++;
    let msg = "(not JSON)";
    try {
      msg = String((JSON.parse(line) as { msg?: unknown }).msg);
    } catch {
      // a line that is not pino's: counted under its own heading
    }
    service.warningsByMessage.set(msg, (service.warningsByMessage.get(msg) ?? 0) + 1);
    if (service.warnings.length < MAX_KEPT) service.warnings.push(line);
  });
  await waitHealthy(service, healthPath, 60_000);
  return service;
}

export async function startApi(env: Record<string, string>): Promise<Service> {
  const port = await freePort();
  return spawnService("API", [`${REPO}src/cli/api.ts`], { ...env, HOST: "127.0.0.1", PORT: String(port) }, port, "/healthz");
}

export async function startSupervisor(env: Record<string, string>, workers: number, concurrency: number): Promise<Service> {
  const port = await freePort();
  return spawnService(
    "supervisor",
    [`${REPO}src/cli/supervisor.ts`, "--workers", String(workers), "--concurrency", String(concurrency)],
    { ...env, HOST: "127.0.0.1", AGENTQ_SUPERVISOR_METRICS_PORT: String(port) },
    port,
    "/healthz",
  );
}
