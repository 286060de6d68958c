/**
 * CPU accounting from /proc (Linux), per process group: this process (split into its main
 * thread, its Bun Worker threads and the runtime's helper threads), the PostgreSQL backends
 * connected to the benchmark's databases, PostgreSQL's own server processes (postmaster,
 * walwriter, checkpointer, background writer: shared with every other database on the
 * server), and redis-server (shared with other users of that Redis).
 */
import { readdirSync, readFileSync } from "node:fs";
import { now } from "./util.ts";

interface CpuSnapshot {
  at: number;
  self: number;
  /** This process's threads: tid -> [name, ticks]. */
  threads: Map<number, [string, number]>;
  postgres: Map<number, number>;
  postgresServer: Map<number, number>;
  redis: Map<number, number>;
  /** Busy and total jiffies of the whole machine. */
  busy: number;
  total: number;
}

export interface CpuUse {
  /** Wall time of the interval, ms. */
  wallMs: number;
  /** CPU seconds used during the interval by this process (all threads). */
  self: number;
  /** Of `self`: the main thread, the Bun Worker threads (actors), the runtime's helper threads (JIT, GC, I/O). */
  mainThread: number;
  workerThreads: number;
  helperThreads: number;
  /**
   * Of `helperThreads`, by thread name, most first (JITWorker: JavaScriptCore's compiler;
   * HeapHelper, mi-scavenger: garbage collection and the allocator; Bun Pool: I/O).
   */
  helpersByName: [string, number][];
  /** Backends connected to the benchmark's databases. */
  postgres: number;
  /** postmaster, walwriter, checkpointer, background writer, ...: shared with the server's other users. */
  postgresServer: number;
  redis: number;
  /** Share of the whole machine busy during the interval (0..1), other users' processes included. */
  machineBusy: number;
}

/** Databases whose backends count as the benchmark's ("postgres" CPU): the server is shared. */
const benchDatabases = new Set<string>();

export function countBackendsOf(...databases: string[]): void {
  for (const d of databases) benchDatabases.add(d);
}

const SERVER_PROCESS = /postgres: (?:[^:]+: )?(checkpointer|background writer|walwriter|autovacuum launcher|autovacuum worker|logical replication launcher|archiver|startup|walsender|walreceiver)\b/;

function classifyPostgres(pid: string): "bench" | "server" | null {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return null;
  }
  if (cmdline.includes("bin/postgres") || SERVER_PROCESS.test(cmdline)) return "server";
  for (const d of benchDatabases) if (cmdline.includes(` ${d} `)) return "bench";
  return null;
}

const CLK_TCK = (() => {
  try {
    const out = Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim();
    return Number(out) || 100;
  } catch {
    return 100;
  }
})();

function procTimes(pid: string): { comm: string; ticks: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const fields = stat.slice(close + 2).split(" ");
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return { comm: stat.slice(open + 1, close), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

function snapshot(): CpuSnapshot {
  const snap: CpuSnapshot = {
    at: now(),
    self: 0,
    threads: new Map(),
    postgres: new Map(),
    postgresServer: new Map(),
    redis: new Map(),
    busy: 0,
    total: 0,
  };
  try {
    snap.self = procTimes(String(process.pid))?.ticks ?? 0;
    for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
      const t = procTimes(`${process.pid}/task/${tid}`);
      if (t) snap.threads.set(Number(tid), [t.comm, t.ticks]);
    }
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      const t = procTimes(pid);
      if (!t) continue;
      if (t.comm === "postgres") {
        const kind = classifyPostgres(pid);
        if (kind === "bench") snap.postgres.set(Number(pid), t.ticks);
        else if (kind === "server") snap.postgresServer.set(Number(pid), t.ticks);
      } else if (t.comm === "redis-server") snap.redis.set(Number(pid), t.ticks);
    }
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    snap.total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    snap.busy = snap.total - idle;
  } catch {
    // not Linux: CPU figures stay 0
  }
  return snap;
}

/**
 * CPU of a process that exited during the interval is lost with it (a backend whose
 * connection closed); the benchmark therefore ends its intervals before closing pools.
 */
export class CpuMeter {
  private readonly before = snapshot();

  stop(): CpuUse {
    const before = this.before;
    const after = snapshot();
    const sum = (a: Map<number, number>, b: Map<number, number>) => {
      let s = 0;
      for (const [pid, t] of a) s += t - (b.get(pid) ?? 0);
      return s / CLK_TCK;
    };
    let mainThread = 0;
    let workerThreads = 0;
    let helperThreads = 0;
    const helpers = new Map<string, number>();
    for (const [tid, [name, ticks]] of after.threads) {
      const d = (ticks - (before.threads.get(tid)?.[1] ?? 0)) / CLK_TCK;
      if (tid === process.pid) mainThread += d;
      else if (name === "Worker") workerThreads += d;
      else {
        helperThreads += d;
        // "Bun Pool 0", "Bun Pool 1", ...: one kind of thread.
        const kind = name.replace(/\s+\d+$/, "");
        helpers.set(kind, (helpers.get(kind) ?? 0) + d);
      }
    }
    return {
      wallMs: after.at - before.at,
      self: (after.self - before.self) / CLK_TCK,
      mainThread,
      workerThreads,
      helperThreads,
      helpersByName: [...helpers].filter(([, d]) => d > 0).sort((x, y) => y[1] - x[1]),
      postgres: sum(after.postgres, before.postgres),
      postgresServer: sum(after.postgresServer, before.postgresServer),
      redis: sum(after.redis, before.redis),
      machineBusy: after.total > before.total ? (after.busy - before.busy) / (after.total - before.total) : 0,
    };
  }
}

/** CPU ms per task summed over the processes the target counts: this process, its backends, redis-server. */
export const cpuMsPerTask = (cpu: CpuUse, tasks: number) => ((cpu.self + cpu.postgres + cpu.redis) * 1000) / tasks;
