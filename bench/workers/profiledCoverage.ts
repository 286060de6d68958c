/**
 * The production worker thread (workers/main.ts) under a CPU profiler, for
 * `bun run bench engine --profile`: `bun --cpu-prof` profiles only the main thread.
 * The thread samples itself through node:inspector from its first line and, once it has
 * drained (the benchmark's burn-down is over), writes its profile to
 * THREAD_PROFILE_DIR as a .cpuprofile (Chrome DevTools' format) before it says
 * `drained`: the supervisor may end the thread as soon as it hears that.
 */
import { writeFileSync } from "node:fs";
import { runActor } from "../../workers/thread.ts";
import { coverageRefresh } from "../../workers/handlers/coverageRefresh.ts";
import { startCpuProfile, THREAD_PROFILE_DIR } from "../engine/threadProfile.ts";

declare const self: Worker;

const dir = THREAD_PROFILE_DIR;
const profiler = await startCpuProfile();
const post = self.postMessage.bind(self);
self.postMessage = ((message: { type?: string }) => {
  if (message?.type !== "drained") return post(message);
  void profiler
    .stop()
    .then((profile) => writeFileSync(`${dir}/${crypto.randomUUID()}.cpuprofile`, JSON.stringify(profile)))
    .finally(() => post(message));
}) as typeof self.postMessage;
runActor(coverageRefresh);
