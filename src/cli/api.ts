/** `bun run api`: the HTTP API alone (scale it apart from the supervisors). */
import { loadConfig } from "../config.ts";
import { openRuntime, serveApi } from "../main.ts";
import { onShutdown, runCli } from "./run.ts";

await runCli(async () => {
  const runtime = await openRuntime(loadConfig(), "api");
  let draining = false;
  const app = serveApi(runtime, () => draining);
  onShutdown(runtime.logger, async () => {
    draining = true;
    await app.stop();
    await runtime.close();
  });
});
