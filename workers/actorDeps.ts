/**
 * The real dependencies of an actor (workers/actor.ts): its own Redis
 * connections (one for commands, one for the blocking pop) and its own
 * PostgreSQL pool: one connection for claims, settles and the batched
 * small-scope measurements its tasks share, plus one per task running a
 * statement of its own (a large scope, step by step), at most
 * OWN_STATEMENTS at once; more wait for a connection.
 */
import { openDatabase, type Database } from "../src/db/client.ts";
import { claimBatch } from "../src/db/tasks/claims.ts";
import { recordProgress } from "../src/db/tasks/leases.ts";
import { queueKeys } from "../src/queue/keys.ts";
import { openRedis } from "../src/queue/connection.ts";
import { TaskPopper } from "../src/queue/pop.ts";
import { Dispatcher } from "../src/queue/dispatch.ts";
import { Parking } from "../src/queue/parking.ts";
import { RuntimeSamples } from "../src/queue/runtimeSamples.ts";
import { SettleBatcher } from "../src/tasks/settleBatcher.ts";
import { CoverageBatcher } from "../src/coverage/batchMeter.ts";
import type { WorkerSettings } from "../src/protocol/messages.ts";
import type { ActorDeps } from "./actor.ts";

export interface OpenActorDeps extends ActorDeps {
  /** Settle statements issued and endings written (group commit), for tests and benchmarks. */
  settleStats(): { writes: number; items: number };
  /** Batched small-scope measurements: statements issued and scopes measured. */
  measureStats(): { writes: number; items: number };
  close(): Promise<void>;
}

/** Tasks of one thread that may run statements of their own at the same time. */
export const OWN_STATEMENTS = 8;

export function openActorDeps(workerId: string, settings: WorkerSettings): OpenActorDeps {
  const openPool = () =>
    openDatabase(settings.databaseUrl, { max: Math.min(settings.concurrency, OWN_STATEMENTS) + 1, applicationName: `agentq-worker-${workerId}` });
  let database: Database = openPool();
  /**
   * Claims commit on a connection of their own without waiting for the WAL flush: a claim lost
   * to a PostgreSQL crash only leaves its task pending (the reconciler dispatches it again; the
   * actor that ran it cannot write anything, its lease token matching no row). WAL is written
   * in order, so a later ending that waits for the flush also makes the claim before it durable.
   * Saves one flush wait per batch on the claim-run-settle cycle.
   */
  const openClaimPool = () =>
    openDatabase(settings.databaseUrl, { max: 1, applicationName: `agentq-worker-${workerId}`, asyncCommit: true });
  let claimDatabase: Database = openClaimPool();
  const redis = openRedis(settings.redis, { maxRetriesPerRequest: null });
  const blocking = openRedis(settings.redis, { maxRetriesPerRequest: null });
  for (const r of [redis, blocking]) r.on("error", () => {}); // reconnects by itself; failures surface in calls
  const keys = queueKeys(settings.redisPrefix);
  const popper = new TaskPopper(redis, blocking, keys);
  const dispatcher = new Dispatcher(redis, keys);
  const parking = new Parking(redis, keys);
  const samples = new RuntimeSamples(redis, keys);
  const settler = new SettleBatcher(() => database.db);
  const meter = new CoverageBatcher(() => database.db, {
    confidenceThreshold: settings.confidenceThreshold,
    defaultTargetDocuments: settings.defaultTargetDocuments,
  });
  return {
    take: (n) => popper.take(n),
    waitForOne: (timeoutSeconds) => popper.waitForOne(timeoutSeconds),
    interruptWait: () => popper.interrupt(),
    claim: (ids) => claimBatch(claimDatabase.db, ids, workerId, settings.leaseMs),
    park: async (tasks) => void (await parking.park(tasks)),
    // An ending: one place freed. If the park is empty a deferral may be on its way: leave a credit.
    releaseParked: async (agentId) => void (await parking.release(agentId, 1, { credit: true })),
    settle: (taskId, leaseToken, ending) => settler.settle({ taskId, leaseToken, ending }),
    progress: async (taskId, leaseToken, percent) => void (await recordProgress(database.db, taskId, leaseToken, percent)),
    measureSmallScope: (scope, signal) => meter.measure(scope, signal),
    redispatch: (t) => dispatcher.dispatch([{ taskId: t.taskId, priority: t.priority, score: Date.parse(t.createdAt) }]),
    recordRuntime: (ms) => samples.add(ms),
    database: () => database,
    settleStats: () => ({ ...settler.stats }),
    measureStats: () => ({ ...meter.stats }),
    /**
     * After a lost connection the pool is replaced before its next use. postgres.js 3.4.9 as
     * published can leave a connection whose backend died unable to send anything again;
     * patches/postgres@3.4.9.patch fixes that (test/integration/postgres-driver.test.ts), and a
     * fresh pool stays as a second line of defence: it carries no state from the dead connections.
     */
    connectionLost: () => {
      for (const old of [database, claimDatabase]) void old.sql.end({ timeout: 0 }).catch(() => {});
      database = openPool();
      claimDatabase = openClaimPool();
    },
    async close() {
      await samples.settled();
      redis.disconnect();
      blocking.disconnect();
      await Promise.all([database.close(), claimDatabase.close()]);
    },
  };
}
