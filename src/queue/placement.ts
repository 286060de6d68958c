/**
 * The Redis half of enqueues, for many at once: each new task's ZADD (none for a deduplicated
 * answer) and each one's position-and-estimate script, all in ONE pipeline, so the requests whose
 * INSERT was group-committed together (src/tasks/insertBatcher.ts) also share one socket write and
 * one round trip, instead of two pipelines each. Within the pipeline a task's script runs right
 * after its own ZADD, so it sees its place. Errors are per command, as Redis returns them.
 */
import type { RedisClient } from "./redisClient.ts";
import type { Dispatcher, Dispatchable } from "./dispatch.ts";
import type { QueueEstimator, QueueSnapshot } from "./estimate.ts";
import type { Priority } from "../core/tasks.ts";

export interface Placement {
  /** The task to put in its queue; null when it is not to be dispatched (a deduplicated answer). */
  dispatch: Dispatchable | null;
  /** Whose position to read; null for a task not pending (then only run times and capacity). */
  position: { taskId: string; priority: Priority } | null;
}

export type Placed = { dispatchError: unknown } & ({ snapshot: QueueSnapshot; estimateError: null } | { snapshot: null; estimateError: unknown });

export async function placeAndEstimate(
  redis: RedisClient,
  dispatcher: Dispatcher,
  estimator: QueueEstimator,
  placements: readonly Placement[],
  samples: number,
): Promise<Placed[]> {
  const pipeline = redis.pipeline();
  for (const p of placements) {
    if (p.dispatch) dispatcher.append(pipeline, [p.dispatch]);
    estimator.append(pipeline, p.position, samples);
  }
  const replies = await pipeline.exec();
  // Discarded as a whole: every request of the batch fails, as on a lost connection.
  if (!replies) throw new Error("queue placement: the pipeline was discarded");
  let i = 0;
  return placements.map((p) => {
    const dispatchError = p.dispatch ? replies[i++]![0] : null;
    const [estimateError, reply] = replies[i++]!;
    if (estimateError) return { dispatchError, snapshot: null, estimateError };
    return { dispatchError, snapshot: estimator.decode(reply), estimateError: null };
  });
}
