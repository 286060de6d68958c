/**
 * Keeping running tasks' leases alive, and advertising capacity.
 *
 * Renewal runs every third of a lease and is single-flight: while PostgreSQL
 * hangs, ticks are skipped instead of piling up statements. A lease that
 * matched no row is gone (the task was cancelled, deleted with its agent,
 * taken over after our lease lapsed, or it ended while the renewal was in
 * flight): its holder is told at once, with the task's status, which tells
 * a real loss from the others.
 *
 * The capacity heartbeat has a timer of its own and touches only Redis, so it
 * goes on while PostgreSQL is down (and the other way round).
 */
import type { RedisClient } from "../queue/redisClient.ts";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { renewLeases } from "../db/tasks/leases.ts";
import { publishCapacity, withdrawCapacity, type Capacity } from "../queue/capacity.ts";
import type { QueueKeys } from "../queue/keys.ts";
import type { TaskStatus } from "../core/tasks.ts";

export interface HeldLease {
  taskId: string;
  leaseToken: string;
}

export const renewEveryMs = (leaseMs: number) => Math.max(50, Math.floor(leaseMs / 3));

export class LeaseKeeper {
  private timer: ReturnType<typeof setInterval> | undefined;
  private inFlight: Promise<void> | null = null;
  /** Ticks skipped because the previous renewal had not returned (for tests and logs). */
  skipped = 0;

  constructor(
    private readonly deps: {
      database: Database;
      logger: Logger;
      leaseMs: number;
      held: () => HeldLease[];
      /** Lost leases, by token, with their task's status as the renewal found it (null: no such task). */
      onLost: (lost: Map<string, TaskStatus | null>) => void;
    },
  ) {}

  start() {
    this.timer = setInterval(() => this.tick(), renewEveryMs(this.deps.leaseMs));
  }

  /** One renewal now, unless one is in flight. */
  tick(): Promise<void> {
    if (this.inFlight) {
      this.skipped++;
      return this.inFlight;
    }
    this.inFlight = this.renew().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  private async renew() {
    const leases = this.deps.held();
    if (leases.length === 0) return;
    try {
      const { lost } = await renewLeases(this.deps.database.db, leases, this.deps.leaseMs);
      if (lost.length > 0) this.deps.onLost(new Map(lost.map((l) => [l.leaseToken, l.status])));
    } catch (error) {
      this.deps.logger.warn({ err: error }, "lease renewal failed; retrying");
    }
  }

  stop() {
    clearInterval(this.timer);
  }
}

export class CapacityHeartbeat {
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly deps: { redis: RedisClient; keys: QueueKeys; supervisorId: string; everyMs: number; logger: Logger; capacity: () => Capacity },
  ) {}

  start() {
    this.timer = setInterval(() => void this.beat(), this.deps.everyMs);
    return this.beat();
  }

  async beat(): Promise<void> {
    const { redis, keys, supervisorId, everyMs } = this.deps;
    await publishCapacity(redis, keys, supervisorId, this.deps.capacity(), 3 * everyMs + 1000).catch((error) =>
      this.deps.logger.warn({ err: error }, "capacity heartbeat failed; retrying"),
    );
  }

  async stop() {
    clearInterval(this.timer);
    await withdrawCapacity(this.deps.redis, this.deps.keys, this.deps.supervisorId).catch(() => {});
  }
}
