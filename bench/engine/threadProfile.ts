/**
 * CPU profiles of the benchmark's own threads (node:inspector's Profiler, which Bun
 * implements), and a summary of them: self time per function, and per area (our code,
 * the PostgreSQL driver, the Redis client, Drizzle, the runtime), so the report names
 * where a thread's CPU goes instead of guessing.
 */
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Where profiled worker threads (bench/workers/profiledCoverage.ts) write their profiles. A fixed
 * place: Bun drops a Worker URL's query string, and a Worker does not see env changes made
 * after the process started, so there is no channel to name a fresh one per run.
 */
export const THREAD_PROFILE_DIR = join(tmpdir(), "agentq-bench-thread-profiles");

export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

/** Sampling period: fine enough for ~10 s runs, coarse enough to cost little. */
const SAMPLE_INTERVAL_US = 500;

export async function startCpuProfile(): Promise<{ stop(): Promise<CpuProfile> }> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: SAMPLE_INTERVAL_US });
  await session.post("Profiler.start");
  return {
    async stop() {
      const { profile } = (await session.post("Profiler.stop")) as { profile: CpuProfile };
      session.disconnect();
      return profile;
    },
  };
}

export interface ProfileLine {
  name: string;
  /** Share of the samples that were not idle. */
  share: number;
}

export interface ProfileSummary {
  /** Samples taken while JavaScript (or a native call from it) ran, over all profiles. */
  samples: number;
  byFunction: ProfileLine[];
  byArea: ProfileLine[];
}

const IDLE = new Set(["(idle)", "(program)", "(garbage collector)"]);

/** Where a function lives, by its script's path. */
export function areaOf(url: string): string {
  if (url.includes("node_modules/postgres/")) return "postgres.js (PostgreSQL driver)";
  if (url.includes("node_modules/ioredis/") || url.includes("node_modules/@ioredis/") || url.includes("redis-parser")) return "ioredis (Redis client)";
  if (url.includes("node_modules/drizzle-orm/")) return "drizzle-orm (SQL building)";
  if (url.includes("node_modules/")) return "other libraries";
  if (url.includes("/src/") || url.includes("/workers/")) return "agentq (src/, workers/)";
  if (url.includes("/bench/")) return "benchmark";
  return "runtime (Bun built-ins, native, message passing)";
}

export function summarizeProfiles(profiles: readonly CpuProfile[], top = 15): ProfileSummary {
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  let busy = 0;
  for (const p of profiles) {
    const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
    p.samples.forEach((id) => {
      // Counted in samples, not timeDeltas: a thread waiting on I/O is not sampled, so the
      // delta after a wait is wall time, not CPU.
      const frame = frames.get(id);
      if (!frame || IDLE.has(frame.functionName)) return;
      const file = frame.url.split("/").slice(-2).join("/");
      const name = `${frame.functionName || "(anonymous)"}${file ? ` (${file}:${frame.lineNumber + 1})` : ""}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + 1);
      const area = areaOf(frame.url);
      byArea.set(area, (byArea.get(area) ?? 0) + 1);
      busy += 1;
    });
  }
  const lines = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, n]) => ({ name, share: busy > 0 ? n / busy : 0 }));
  return { samples: busy, byFunction: lines(byFunction, top), byArea: lines(byArea, byArea.size) };
}
