/** `bun run start`: API and supervisor in one process. */
import { loadConfig } from "../config.ts";
import { openRuntime, serveApi } from "../main.ts";
import { startEngine } from "../supervisor/engine.ts";
import { flagValue } from "./args.ts";
import { onShutdown, runCli } from "./run.ts";

await runCli(async () => {
  const workersFlag = flagValue(process.argv.slice(2), "workers");
  const config = loadConfig(process.env, workersFlag === undefined ? {} : { workers: Number(workersFlag) });
  const runtime = await openRuntime(config, "all");
  let draining = false;
  const app = serveApi(runtime, () => draining);
  const engine = await startEngine(runtime, {
    workers: config.workers,
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
  });
});
