/**
 * The coverage_refresh task: an agent's coverage, measured with the small scopes of the other
 * tasks running at the same moment in one statement, or, for a large scope, step by step (with
 * progress, each step cancellable in PostgreSQL).
 */
import { measureCoverageInSteps } from "../../src/coverage/stepwise.ts";
import type { TaskHandler } from "./types.ts";

export const coverageRefresh: TaskHandler = async (ctx) =>
  (await ctx.measureSmallScope()) ??
  measureCoverageInSteps(
    ctx.database.db,
    ctx.agent,
    { confidenceThreshold: ctx.settings.confidenceThreshold, defaultTargetDocuments: ctx.settings.defaultTargetDocuments },
    { signal: ctx.signal, onProgress: (p) => ctx.progress(p) },
  );
