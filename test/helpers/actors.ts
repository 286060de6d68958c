/**
 * Pieces for running an Actor (workers/actor.ts) in the test process with its real
 * dependencies: its settings from a test context's config, and a handler whose tasks each wait
 * for the test to open their gate.
 */
import type { Config } from "../../src/config.ts";
import type { WorkerSettings } from "../../src/protocol/messages.ts";
import { redisTargetOf } from "../../src/queue/connection.ts";
import type { TaskHandler } from "../../workers/handlers/types.ts";

/** An actor's settings for the test context's database and Redis: long leases, short pops. */
export function actorSettings(c: Config, concurrency: number): WorkerSettings {
  return {
    databaseUrl: c.databaseUrl,
    redis: redisTargetOf(c),
    redisPrefix: c.redisPrefix,
    confidenceThreshold: c.confidenceThreshold,
    defaultTargetDocuments: c.defaultTargetDocuments,
    leaseMs: 60_000,
    concurrency,
    claimCooldownMs: 0,
    popTimeoutSeconds: 0.2,
  };
}

/** A handler that waits until the test opens its task's gate, then returns a canned result; it honours abort. */
export function gatedHandler(result: { overall_coverage: number; total_documents: number; total_chunks: number }) {
  const gates = new Map<string, () => void>();
  const opened = new Set<string>();
  const handler: TaskHandler = (c) =>
    new Promise((resolve, reject) => {
      if (c.signal.aborted) return reject(c.signal.reason);
      c.signal.addEventListener("abort", () => reject(c.signal.reason), { once: true });
      const finish = () =>
        resolve({
          agent_id: c.agentId,
          ...result,
          node_coverage: {},
          version: c.agent.taxonomy_version,
          calculated_at: new Date().toISOString(),
        });
      if (opened.has(c.taskId)) finish();
      else gates.set(c.taskId, finish);
    });
  return {
    handler,
    open(ids: string[]) {
      for (const id of ids) {
        opened.add(id);
        gates.get(id)?.();
      }
    },
  };
}
