/** The coverage_refresh task: recompute an agent's coverage step by step. */
import { requireAgent } from "../../src/db/agents.ts";
import { measureCoverageInSteps } from "../../src/coverage/stepwise.ts";
import type { TaskHandler } from "./types.ts";

export const coverageRefresh: TaskHandler = async (ctx) => {
  const agent = await requireAgent(ctx.database.db, ctx.agentId);
  return measureCoverageInSteps(
    ctx.database.db,
    agent,
    { confidenceThreshold: ctx.settings.confidenceThreshold, defaultTargetDocuments: ctx.settings.defaultTargetDocuments },
    { signal: ctx.signal, onProgress: (p) => ctx.progress(p) },
  );
};
