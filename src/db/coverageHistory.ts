/** Reads of coverage_history. */
import { sql } from "drizzle-orm";
import type { DbOrTx } from "./client.ts";
import { toIso } from "./values.ts";

type Row = Record<string, unknown>;

export interface HistoryEntry {
  timestamp: string;
  overall_coverage: number;
  total_documents: number;
  total_chunks: number;
  version: string;
}

export async function listCoverageHistory(
  db: DbOrTx,
  agentId: string,
  range: { start?: string; end?: string; limit: number; offset: number },
): Promise<{ history: HistoryEntry[]; total: number }> {
  const start = range.start ?? null;
  const end = range.end ?? null;
  const where = sql`agent_id = ${agentId}
    and (${start}::timestamptz is null or timestamp >= ${start}::timestamptz)
    and (${end}::timestamptz is null or timestamp <= ${end}::timestamptz)`;
  const rows = await db.execute<Row>(sql`
    select timestamp, overall_coverage, total_documents, total_chunks, version
    from coverage_history where ${where}
    order by timestamp desc, history_id desc limit ${range.limit} offset ${range.offset}`);
  const [count] = await db.execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where ${where}`);
  return {
    history: rows.map((r) => ({
      timestamp: toIso(r.timestamp as string),
      overall_coverage: Number(r.overall_coverage),
      total_documents: Number(r.total_documents),
      total_chunks: Number(r.total_chunks),
      version: String(r.version),
    })),
    total: count!.n,
  };
}
