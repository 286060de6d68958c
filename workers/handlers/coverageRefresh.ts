/** The coverage_refresh task: recompute an agent's coverage step by step. */
import { measureCoverageInSteps } from "../../src/coverage/stepwise.ts";
import type { TaskHandler } from "./types.ts";

export const coverageRefresh: TaskHandler = async (ctx) =>
  measureCoverageInSteps(
    ctx.database.db,
    ctx.agent,
    { confidenceThreshold: ctx.settings.confidenceThreshold, defaultTargetDocuments: ctx.settings.defaultTargetDocuments },
    { signal: ctx.signal, onProgress: (p) => ctx.progress(p) },
  );
