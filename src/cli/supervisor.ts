/** `bun run supervisor --workers N`: the worker pool alone. */
import { loadConfig } from "../config.ts";
import { onShutdown, openRuntime } from "../main.ts";
import { startSupervisor } from "../supervisor/stub.ts";
import { flagValue } from "./args.ts";
import { runCli } from "./run.ts";

await runCli(async () => {
  const workersFlag = flagValue(process.argv.slice(2), "workers");
  const config = loadConfig(process.env, workersFlag === undefined ? {} : { workers: Number(workersFlag) });
  const runtime = await openRuntime(config, "supervisor");
  const supervisor = startSupervisor(runtime, config.workers);
  onShutdown(runtime.logger, async () => {
    await supervisor.stop();
    await runtime.close();
  });
});
