/** `bun run api`: the HTTP API alone (scale it apart from the supervisors). */
import { loadConfig } from "../config.ts";
import { openRuntime, serveApi } from "../main.ts";
import { onShutdown, runCli, shutdownBoundMs } from "./run.ts";

await runCli(async () => {
  const config = loadConfig();
  const runtime = await openRuntime(config, "api");
  let draining = false;
  const app = serveApi(runtime, () => draining);
  // Bounded like the supervisor's: a client stream, Redis or PostgreSQL that does not let go cannot hold the exit.
  onShutdown(runtime.logger, async () => {
    draining = true;
    await app.stop();
    await runtime.close();
  }, shutdownBoundMs(config));
});
