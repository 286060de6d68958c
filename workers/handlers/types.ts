/** What a task handler gets and returns. Handlers run inside a worker actor. */
import type { Database } from "../../src/db/client.ts";
import type { WorkerSettings } from "../../src/protocol/messages.ts";
import type { AgentScope, CoverageResult } from "../../src/coverage/meter.ts";

export interface TaskContext {
  taskId: string;
  agentId: string;
  /** The agent's scope as of the claim. */
  agent: AgentScope;
  attempt: number;
  database: Database;
  settings: WorkerSettings;
  /**
   * Fires when the supervisor asks this task to stop (cancel, timeout, shutdown, lost lease). Pass it to
   * every statement (`queryPrepared(db, query, { signal })`) so that aborting cancels the statement in PostgreSQL.
   */
  signal: AbortSignal;
  progress(percent: number): Promise<void>;
  /**
   * The agent's coverage measured together with the other tasks' small scopes asked for at the
   * same moment (one statement for all: src/coverage/batchMeter.ts), or null when its scope is
   * too large for that path. Rejects at once when `signal` fires.
   */
  measureSmallScope(): Promise<CoverageResult | null>;
}

export type TaskHandler = (ctx: TaskContext) => Promise<CoverageResult>;
