/**
 * The coverage meter: SQL aggregates (src/db/coverage.ts) + the pure formula
 * (src/core/coverage.ts). Used by the API and, later, by worker actors.
 */
import type { DbOrTx } from "../db/client.ts";
import { loadCoverageStats } from "../db/coverage.ts";
import { finalizeCoverage, findGaps, type CoverageReport, type Gap, type NodeStats } from "../core/coverage.ts";

export interface MeterSettings {
  confidenceThreshold: number;
  defaultTargetDocuments: number;
}

export interface AgentScope {
  agent_id: string;
  taxonomy_node_ids: string[];
  taxonomy_version: string;
}

export interface CoverageResult extends CoverageReport {
  agent_id: string;
  version: string;
  calculated_at: string;
}

async function stats(db: DbOrTx, agent: AgentScope, settings: MeterSettings) {
  return loadCoverageStats(db, {
    agentId: agent.agent_id,
    roots: agent.taxonomy_node_ids,
    version: agent.taxonomy_version,
    confidenceThreshold: settings.confidenceThreshold,
    defaultTarget: settings.defaultTargetDocuments,
  });
}

export async function measureCoverage(db: DbOrTx, agent: AgentScope, settings: MeterSettings, now = new Date()): Promise<CoverageResult> {
  const { nodes, totals } = await stats(db, agent, settings);
  const report = finalizeCoverage(nodes, totals);
  return {
    agent_id: agent.agent_id,
    overall_coverage: report.overall_coverage,
    total_documents: report.total_documents,
    total_chunks: report.total_chunks,
    node_coverage: report.node_coverage,
    version: agent.taxonomy_version,
    calculated_at: now.toISOString(),
  };
}

export async function measureGaps(db: DbOrTx, agent: AgentScope, settings: MeterSettings, threshold: number): Promise<Gap[]> {
  const { nodes }: { nodes: NodeStats[] } = await stats(db, agent, settings);
  return findGaps(nodes, threshold);
}
