/**
 * Group commit of the Redis half of enqueues (src/queue/placement.ts): the requests whose INSERT
 * was written by one statement resume together, and their ZADDs and estimate scripts go out in
 * one pipeline instead of two pipelines each (socket writes were a fifth of the API thread's CPU
 * over HTTP). A lone request is sent on the next microtask, so nothing waits at low load.
 */
import type { RedisClient } from "../queue/redisClient.ts";
import type { Dispatcher } from "../queue/dispatch.ts";
import type { QueueEstimator } from "../queue/estimate.ts";
import { placeAndEstimate, type Placed, type Placement } from "../queue/placement.ts";
import { GroupCommitter } from "./groupCommit.ts";

/** More waiting requests than this go in successive pipelines (the insert batch's size). */
const MAX_BATCH = 256;

export class PlacementBatcher {
  private readonly committer: GroupCommitter<Placement, Placed>;

  constructor(redis: RedisClient, dispatcher: Dispatcher, estimator: QueueEstimator, samples: number) {
    this.committer = new GroupCommitter(
      async (batch) => (await placeAndEstimate(redis, dispatcher, estimator, batch, samples)).map((placed) => Promise.resolve(placed)),
      MAX_BATCH,
    );
  }

  place(placement: Placement): Promise<Placed> {
    return this.committer.submit(placement);
  }
}
