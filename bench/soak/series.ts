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
 *   - PostgreSQL connections, per process: 2. The pools are bounded; a series that grows is a
 *     leak of connections (or of backends), and two allows an idle one reaped and reopened.
 *   - the Redis keys of the soak's prefix: 8 keys and 256 KiB (or 10%). agentq's Redis holds
 *     queues, a capacity hash, a capped run-time list, counters and rate-limit windows: a fixed
 *     set; a key per task left behind would add thousands.
 *   - the backlog (pending tasks, queued ids, webhooks still to deliver): one second of load
 *     (two for webhooks, whose retries wait 1 s and more), at least 10. At half capacity the
 *     backlog stays near empty; a backlog that grows means the system fell behind.
 *   - Redis's used_memory: shown but not judged, the server is shared with other work.
 */
import { judgeFlat, type Bound, type Verdict } from "./flatness.ts";
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

export function seriesSpecs(rate: number): SeriesSpec[] {
  const backlog = (seconds: number): Bound => ({ floor: Math.max(10, Math.ceil(rate * seconds)), relative: 0 });
  return [
    { key: "apiRssMb", label: "API RSS", unit: "MB", panel: "rss", bound: { floor: 16, relative: 0.05 } },
    { key: "supervisorRssMb", label: "supervisor RSS (threads included)", unit: "MB", panel: "rss", bound: { floor: 16, relative: 0.05 } },
    { key: "apiConnections", label: "PostgreSQL connections, API", unit: "", panel: "connections", bound: { floor: 2, relative: 0 } },
    { key: "supervisorConnections", label: "PostgreSQL connections, supervisor", unit: "", panel: "connections", bound: { floor: 2, relative: 0 } },
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
