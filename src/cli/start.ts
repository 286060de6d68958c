/** `bun run start`: API and supervisor in one process. */
import { loadConfig } from "../config.ts";
import { openRuntime, serveApi } from "../main.ts";
import { startEngine } from "../supervisor/engine.ts";
import { engineFlags } from "./args.ts";
import { onShutdown, shutdownBoundMs, runCli } from "./run.ts";

await runCli(async () => {
  const config = loadConfig(process.env, engineFlags(process.argv.slice(2)));
  const runtime = await openRuntime(config, "all");
  let draining = false;
  const app = serveApi(runtime, () => draining);
  const engine = await startEngine(runtime, {
    workers: config.workers,
    concurrency: config.workerConcurrency,
    onFatal: (error) => {
      runtime.logger.fatal({ err: error }, "supervisor gave up");
      process.exit(70);
    },
  });
  onShutdown(runtime.logger, async () => {
    draining = true;
    await app.stop();
    await engine.stop();
    await runtime.close();
  }, shutdownBoundMs(config));
});
