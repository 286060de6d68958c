/**
 * `bun run bench <name> [flags]`: runs one benchmark module. Each module exports
 * `run(args)` and lives beside this file; add new ones (engine, webhooks, ...) to
 * BENCHMARKS below.
 */

export interface BenchmarkModule {
  /** Runs the benchmark; resolves to the process exit code (2 for bad flags). */
  run(args: string[]): Promise<number>;
}

interface BenchmarkEntry {
  summary: string;
  load(): Promise<BenchmarkModule>;
}

const BENCHMARKS: Record<string, BenchmarkEntry> = {
  coverage: {
    summary: "coverage meter (one statement) against the naive per-node approach, on a 1M-chunk corpus",
    load: () => import("./coverage.ts"),
  },
  engine: {
    summary: "task engine (supervisor + worker threads, PostgreSQL + Redis) against BullMQ and Graphile Worker: burn-down, end to end over HTTP, CPU per task, pickup and cancel latency",
    load: () => import("./engine.ts"),
  },
  webhooks: {
    summary: "webhook deliveries/s while tasks run, success rate against a receiver failing 50%, task throughput with/without webhooks",
    load: () => import("./webhooks.ts"),
  },
  soak: {
    summary: "soak test: capacity measured first, then half of it for --minutes M (default 10) with webhooks, cancels, SSE clients and the reconciler; RSS, PostgreSQL connections, Redis memory and backlog every 10 s, each judged flat; nothing lost or doubled",
    load: () => import("./soak.ts"),
  },
  sse: {
    summary: "live events: 1,000 SSE clients on one API process while tasks run; delivery latency p50/p99 (supervisor event -> client) and the API process's RSS",
    load: () => import("./sse.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(BENCHMARKS).map((n) => n.length));
  const lines = Object.entries(BENCHMARKS).map(([name, b]) => `  ${name.padEnd(width)}  ${b.summary}`);
  return [
    "usage: bun run bench <name> [flags]",
    "",
    "benchmarks:",
    ...lines,
    "",
    "Results are written to docs/benchmarks.md. `bun run bench <name> --help` lists a benchmark's flags.",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "-h" || name === "--help" || name === "help") {
    console.log(usage());
    return 0;
  }
  const entry = name === undefined ? undefined : BENCHMARKS[name];
  if (!entry) {
    if (name !== undefined) console.error(`unknown benchmark: ${name}\n`);
    console.error(usage());
    return 2;
  }
  const mod: BenchmarkModule = await entry.load();
  return mod.run(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
}
