/**
 * The soak's series and the growth each may show per 10 minutes after the warm-up (see
 * flatness.ts for the verdict; docs/benchmarks.md "Soak test" for the reasoning, repeated here):
 *
 *   - RSS of the API and of the supervisor: 16 MB, or 5% of the level if larger. Bun's heap
 *     grows in steps of a few MB (JavaScriptCore's heap and mimalloc's segments) and settles
 *     after the garbage collector has sized itself; 16 MB is two or three such steps. At the
 *     soak's rate (about 80 tasks/s on a busy 2-core machine) it still catches a leak of a few
 *     hundred bytes per task (printed with the result): less than one task row, one request
 *     or one listener kept per task would cost.
 *   - PostgreSQL connections, per process: 2, or any trend that stays within the sum of the
 *     process's pool bounds (`poolBounds`). A pool opens connections lazily up to its bound (a
 *     cancellable statement reserves one of its own, so a busy moment opens one more), which is
 *     a step, not a leak; a leak of connections or backends (pools opened and never closed)
 *     goes past the bound.
 *   - the Redis keys of the soak's prefix: 8 keys and 256 KiB (or 10%). agentq's Redis holds
 *     queues, a capacity hash, a capped run-time list, counters and rate-limit windows: a fixed
 *     set; a key per task left behind would add thousands.
 *   - the backlog (pending tasks, queued ids, webhooks still to deliver): one second of load
 *     (two for webhooks, whose retries wait 1 s and more), at least 10. At half capacity the
 *     backlog stays near empty; a backlog that grows means the system fell behind.
 *   - Redis's used_memory: shown but not judged, the server is shared with other work.
 */
import { judgeFlat, type Bound, type Verdict } from "./flatness.ts";
import { OWN_STATEMENTS } from "../../workers/actorDeps.ts";
import { DEFAULT_POOL_MAX as RUNTIME_POOL_MAX } from "../../src/db/client.ts";
import type { SoakSample } from "./sampler.ts";

export interface SeriesSpec {
  key: Exclude<keyof SoakSample, "t" | "sent">;
  label: string;
  unit: string;
  /** Which chart panel it goes to. */
  panel: "rss" | "connections" | "redis" | "backlog";
  /** null: shown, not judged. */
  bound: Bound | null;
}

export const WINDOW_S = 600;

/** The most PostgreSQL connections each process's pools may hold (see poolBounds). */
export interface PoolBounds {
  api: number;
  supervisor: number;
}

/**
 * The pools' bounds, from the code that opens them: a process's runtime pool (src/main.ts,
 * openDatabase's default of 10); in the supervisor also the webhook sender's LISTEN connection
 * (postgres.js keeps it outside the pool) and, per worker thread, its statement pool and its
 * claim connection (workers/actorDeps.ts).
 */
export function poolBounds(workers: number, concurrency: number): PoolBounds {
  const runtime = RUNTIME_POOL_MAX;
  const perThread = Math.min(concurrency, OWN_STATEMENTS) + 1 + 1;
  return { api: runtime, supervisor: runtime + 1 + workers * perThread };
}

export function seriesSpecs(rate: number, pools: PoolBounds): SeriesSpec[] {
  const backlog = (seconds: number): Bound => ({ floor: Math.max(10, Math.ceil(rate * seconds)), relative: 0 });
  return [
    { key: "apiRssMb", label: "API RSS", unit: "MB", panel: "rss", bound: { floor: 16, relative: 0.05 } },
    { key: "supervisorRssMb", label: "supervisor RSS (threads included)", unit: "MB", panel: "rss", bound: { floor: 16, relative: 0.05 } },
    { key: "apiConnections", label: "PostgreSQL connections, API", unit: "", panel: "connections", bound: { floor: 2, relative: 0, ceiling: pools.api } },
    {
      key: "supervisorConnections",
      label: "PostgreSQL connections, supervisor",
      unit: "",
      panel: "connections",
      bound: { floor: 2, relative: 0, ceiling: pools.supervisor },
    },
    { key: "redisUsedMb", label: "Redis used_memory (shared server)", unit: "MB", panel: "redis", bound: null },
    { key: "prefixKb", label: "Redis, the soak prefix's bytes", unit: "KiB", panel: "redis", bound: { floor: 256, relative: 0.1 } },
    { key: "prefixKeys", label: "Redis, the soak prefix's keys", unit: "", panel: "redis", bound: { floor: 8, relative: 0 } },
    { key: "pendingTasks", label: "pending tasks", unit: "", panel: "backlog", bound: backlog(1) },
    { key: "queuedIds", label: "ids in the Redis queues", unit: "", panel: "backlog", bound: backlog(1) },
    { key: "webhooksPending", label: "webhooks still to deliver", unit: "", panel: "backlog", bound: backlog(2) },
  ];
}

export interface Judged {
  spec: SeriesSpec;
  verdict: Verdict;
  first: number;
  last: number;
  min: number;
  max: number;
}

export function judgeAll(samples: SoakSample[], specs: SeriesSpec[], warmupS: number): Judged[] {
  return specs.map((spec) => {
    const series = samples.map((s) => ({ t: s.t, v: s[spec.key] }));
    const bound = spec.bound ?? { floor: Number.POSITIVE_INFINITY, relative: 0 };
    const after = series.filter((s) => s.t >= warmupS).map((s) => s.v);
    return {
      spec,
      verdict: judgeFlat(series, { ...bound, warmupS, windowS: WINDOW_S }),
      first: after[0] ?? Number.NaN,
      last: after.at(-1) ?? Number.NaN,
      min: Math.min(...after),
      max: Math.max(...after),
    };
  });
}
