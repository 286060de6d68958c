/**
 * Benchmark worker thread (bench/sse.ts): every task works for STEPS steps of STEP_MS each
 * (abortable sleeps), reporting progress after each, then computes the agent's (tiny)
 * coverage: a task that makes live events at a known rate (a running status, STEPS progress
 * events, a completed status), whatever the machine.
 */
import { runActor } from "../../workers/thread.ts";
import { coverageRefresh } from "../../workers/handlers/coverageRefresh.ts";
import { abortableSleep } from "./sleep.ts";

const STEPS = 5;
const STEP_MS = 100;

runActor(async (ctx) => {
  for (let step = 1; step <= STEPS; step++) {
    await abortableSleep(STEP_MS, ctx.signal);
    await ctx.progress(Math.floor((step * 90) / STEPS));
  }
  return coverageRefresh(ctx);
});
