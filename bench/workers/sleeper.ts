/**
 * Benchmark worker thread (bench/engine.ts, cancel latency): every task sleeps
 * for SLEEP_MS, abortably, then computes the agent's (tiny) coverage. A cancel
 * rejects the sleep at once with the signal's reason, so the actor ends the
 * task `cancelled`; what is measured is the engine's cancel path, not the task.
 */
import { runActor } from "../../workers/thread.ts";
import { coverageRefresh } from "../../workers/handlers/coverageRefresh.ts";
import { abortableSleep } from "./sleep.ts";

const SLEEP_MS = 60_000;

runActor(async (ctx) => {
  await abortableSleep(SLEEP_MS, ctx.signal);
  return coverageRefresh(ctx);
});
