/** The production worker thread: runs coverage_refresh tasks. */
import { runActor } from "./thread.ts";
import { coverageRefresh } from "./handlers/coverageRefresh.ts";

runActor(coverageRefresh);
