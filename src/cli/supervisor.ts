/** `bun run supervisor --workers N [--concurrency C]`: the worker pool alone. */
import { loadConfig } from "../config.ts";
import { openRuntime } from "../main.ts";
import { startEngine } from "../supervisor/engine.ts";
import { serveMetrics } from "../metrics/server.ts";
import { engineFlags } from "./args.ts";
import { onShutdown, shutdownBoundMs, runCli } from "./run.ts";

await runCli(async () => {
  const config = loadConfig(process.env, engineFlags(process.argv.slice(2)));
  const runtime = await openRuntime(config, "supervisor");
  const engine = await startEngine(runtime, {
    workers: config.workers,
    concurrency: config.workerConcurrency,
    onFatal: (error) => {
      runtime.logger.fatal({ err: error }, "supervisor gave up");
      process.exit(70);
    },
  });
  // GET /metrics and /healthz on AGENTQ_SUPERVISOR_METRICS_PORT (the API serves them in `bun run start`).
  const metricsServer = serveMetrics({ metrics: runtime.metrics, hostname: config.host, port: config.supervisorMetricsPort, logger: runtime.logger });
  onShutdown(runtime.logger, async () => {
    await engine.stop();
    await metricsServer.stop();
    await runtime.close();
  }, shutdownBoundMs(config));
});
