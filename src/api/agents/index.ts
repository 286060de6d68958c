import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors } from "../common.ts";
import { ErrorBody } from "../errors.ts";
import {
  Agent,
  AgentCreate,
  AgentList,
  AgentParams,
  AgentPatch,
  Coverage,
  Gaps,
  GapsQuery,
  ListQuery,
  QueryIn,
  QueryOut,
  SearchQuery,
} from "./model.ts";
import { createAgent, deleteAgent, listAgents, requireAgent, updateAgent } from "../../db/agents.ts";
import { storeAgentCoverage } from "../../db/coverage.ts";
import { searchScope } from "../../db/search.ts";
import { measureCoverage, measureGaps } from "../../coverage/meter.ts";
import { notFound } from "../../core/errors.ts";
import { assertConfigsWithinLimits } from "./limits.ts";
import { Parking } from "../../queue/parking.ts";
import { queueKeys } from "../../queue/keys.ts";

const DEFAULT_MAX_RESULTS = 50;

export const agentRoutes = (deps: AppDeps) => {
  const db = deps.database.db;
  const parking = new Parking(deps.redis, queueKeys(deps.config.redisPrefix));
  return new Elysia({ name: "agentq.agents", tags: ["agents"] })
    .post(
      "/agents/from-taxonomy",
      async ({ body, status }) => {
        assertConfigsWithinLimits(body, deps.config);
        return status(201, await createAgent(db, body));
      },
      {
        body: AgentCreate,
        response: { 201: Agent, ...authErrors },
        detail: {
          summary: "Create an agent scoped to taxonomy nodes",
          description:
            "Without taxonomy_version, the newest version holding every node is used. 400 unknown_taxonomy_node if a node is not in the version. retrieval_config and features_config are limited in depth (AGENTQ_MAX_CONFIG_DEPTH) and size (AGENTQ_MAX_CONFIG_BYTES).",
        },
      },
    )
    .get(
      "/agents",
      async ({ query }) => {
        const filters = { ...query, max_results: query.max_results ?? DEFAULT_MAX_RESULTS };
        const { agents, total } = await listAgents(db, filters);
        return { agents, total, filters_applied: filters };
      },
      {
        query: ListQuery,
        response: { 200: AgentList, ...authErrors },
        detail: { summary: "List agents, newest first, filtered by level, minimum coverage and name" },
      },
    )
    .get(
      "/agents/search",
      async ({ query }) => {
        const filters = { q: query.q, max_results: query.max_results ?? DEFAULT_MAX_RESULTS };
        const { agents, total } = await listAgents(db, filters);
        return { agents, total, filters_applied: filters };
      },
      {
        query: SearchQuery,
        response: { 200: AgentList, ...authErrors },
        detail: { summary: "Find agents whose name contains q (case-insensitive)" },
      },
    )
    .get("/agents/:agent_id", async ({ params }) => requireAgent(db, params.agent_id), {
      params: AgentParams,
      response: { 200: Agent, ...authErrors, 404: ErrorBody },
      detail: { summary: "Get an agent" },
    })
    .patch(
      "/agents/:agent_id",
      async ({ params, body }) => {
        assertConfigsWithinLimits(body, deps.config);
        const agent = await updateAgent(db, params.agent_id, body);
        // A limit raised or lifted: what the agent's park holds goes back to the queues (what is
        // still over the new limit is parked again at its claim). Should Redis fail, the
        // reconciler releases them: it moves parked tasks of agents with room, and re-dispatches
        // those of an agent without a limit.
        if (body.max_concurrent_refreshes !== undefined)
          await parking.releaseAll(agent.agent_id).catch((error) => deps.logger.warn({ err: error, agent_id: agent.agent_id }, "releasing parked tasks failed; the reconciler will"));
        return agent;
      },
      {
        params: AgentParams,
        body: AgentPatch,
        response: { 200: Agent, ...authErrors, 404: ErrorBody },
        detail: {
          summary: "Change only the fields sent",
          description:
            "coverage_targets, when sent, replaces the agent's whole set of targets. max_concurrent_refreshes: a positive integer (at most 10000) limits how many of the agent's refreshes run at once; null lifts the limit. Tasks already running are not stopped by a lower limit.",
        },
      },
    )
    .delete(
      "/agents/:agent_id",
      async ({ params, status }) => {
        if (!(await deleteAgent(db, params.agent_id))) throw notFound("agent", params.agent_id);
        return status(204, undefined);
      },
      {
        params: AgentParams,
        response: { 204: t.Void(), ...authErrors, 404: ErrorBody },
        detail: { summary: "Delete an agent with its targets, tasks and history" },
      },
    )
    .get(
      "/agents/:agent_id/coverage",
      async ({ params }) => {
        const agent = await requireAgent(db, params.agent_id);
        const result = await measureCoverage(db, agent, deps.config);
        await storeAgentCoverage(db, agent.agent_id, result, new Date(result.calculated_at));
        return result;
      },
      {
        params: AgentParams,
        response: { 200: Coverage, ...authErrors, 404: ErrorBody },
        detail: { summary: "Compute the agent's coverage now and store the figures on the agent" },
      },
    )
    .get(
      "/agents/:agent_id/gaps",
      async ({ params, query }) => {
        const threshold = query.threshold ?? 0.5;
        const agent = await requireAgent(db, params.agent_id);
        const gaps = await measureGaps(db, agent, deps.config, threshold);
        return { agent_id: agent.agent_id, threshold, gaps, detected_at: new Date().toISOString() };
      },
      {
        params: AgentParams,
        query: GapsQuery,
        response: { 200: Gaps, ...authErrors, 404: ErrorBody },
        detail: { summary: "Nodes below threshold coverage, most missing documents first" },
      },
    )
    .post(
      "/agents/:agent_id/query",
      async ({ params, body }) => {
        const agent = await requireAgent(db, params.agent_id);
        const results = await searchScope(
          db,
          agent.agent_id,
          { roots: agent.taxonomy_node_ids, version: agent.taxonomy_version, confidenceThreshold: deps.config.confidenceThreshold },
          body.query,
          body.top_k ?? 10,
        );
        return { agent_id: agent.agent_id, query: body.query, results, total: results.length };
      },
      {
        params: AgentParams,
        body: QueryIn,
        response: { 200: QueryOut, ...authErrors, 404: ErrorBody },
        detail: { summary: "Full-text search over chunks of the documents in the agent's scope, best first" },
      },
    );
};
