/**
 * Live events benchmark: many SSE clients on ONE API process while an engine runs tasks.
 *
 *   this process        the engine (supervisor + worker threads running bench/workers/progress.ts:
 *                       5 steps of 100 ms, a progress event after each) and the enqueuer (tasks at
 *                       a steady rate through the library path); it stamps every supervisor event
 *                       (started, progress, finished) and sends the stamp to the client processes
 *   API process         `bun src/cli/api.ts` (NODE_ENV=production), the only SSE server; its RSS
 *                       and CPU are read from /proc
 *   client processes    bench/sse/clients.ts: the streams, split between them; each measures
 *                       supervisor event -> arrival of the bytes at the client, per client and event
 *
 * Each scenario (`--scenarios F:R,...`): F clients on GET /events (every event), the rest on
 * GET /events?agent_id=<one of the agents>, while R tasks per second run; each scenario gets a
 * fresh API process, clients and engine.
 * Own database `agentq_bench_sse` (BENCH_SSE_DATABASE_URL overrides; its tables are truncated)
 * and Redis prefix `agentq-bench-sse`.
 */
import { randomUUID } from "node:crypto";
import { monitorEventLoopDelay } from "node:perf_hooks";
import os from "node:os";
import type { Subprocess } from "bun";
import { DEFAULTS, loadConfig, type Config } from "../src/config.ts";
import { openRuntime, type Runtime } from "../src/main.ts";
import { startEngine, type Engine } from "../src/supervisor/engine.ts";
import type { SupervisorEvent } from "../src/supervisor/supervisor.ts";
import { TaskService } from "../src/tasks/service.ts";
import { upsertTaxonomy } from "../src/db/taxonomy.ts";
import { queueKeys } from "../src/queue/keys.ts";
import { parseCommandLine, writeBenchmarkSection } from "./support.ts";
import { freePort, lines, procStats } from "./processes.ts";

const REDIS_PREFIX = "agentq-bench-sse";
const API_KEY = "bench-sse-key-0123456789abcdef";
const SECTION_TITLE = "## Live events";
const REPO = new URL("../", import.meta.url).pathname;

interface Scenario {
  /** Clients on GET /events (unfiltered); the rest are on GET /events?agent_id=. */
  firehose: number;
  /** Tasks enqueued per second. */
  rate: number;
}

interface Options {
  clients: number;
  scenarios: Scenario[];
  agents: number;
  seconds: number;
  warmup: number;
  workers: number;
  concurrency: number;
  clientProcs: number;
  bufferBytes: number;
  writeDocs: boolean;
}

const DEFAULT_SCENARIOS = "20:100,100:200";

const HELP = `usage: bun run bench sse [--clients N] [--scenarios F:R,...] [--agents A] [--seconds S] [--warmup W]
                     [--workers T] [--concurrency C] [--client-procs P] [--buffer-bytes B] [--no-docs]

  --clients N        SSE clients on the one API process (default 1000)
  --scenarios F:R,.. one run each (default ${DEFAULT_SCENARIOS}): F of the clients on GET /events (unfiltered),
                     the rest on GET /events?agent_id=, while R tasks per second run; each task makes 7 events
                     (running, 5 progress 100 ms apart, completed)
  --agents A         agents the tasks (and the filtered clients) are spread over (default 100)
  --seconds S        measured seconds per run (default 20), after --warmup W seconds of load (default 5)
  --workers T        worker threads of the engine (default 1), --concurrency C tasks each (default 128)
  --client-procs P   processes the clients are spread over (default 2)
  --buffer-bytes B   AGENTQ_SSE_CLIENT_BUFFER_BYTES of the API process (default: the configuration default)
  --no-docs          do not rewrite the "${SECTION_TITLE}" section of docs/benchmarks.md`;

function parseScenarios(text: string): Scenario[] | null {
  const out: Scenario[] = [];
  for (const part of text.split(",")) {
    const m = /^(\d+):(\d+)$/.exec(part.trim());
    if (!m || Number(m[2]) < 1) return null;
    out.push({ firehose: Number(m[1]), rate: Number(m[2]) });
  }
  return out.length > 0 ? out : null;
}

function parseArgs(args: string[]): Options | string {
  const o: Options = {
    clients: 1000,
    scenarios: parseScenarios(DEFAULT_SCENARIOS)!,
    agents: 100,
    seconds: 20,
    warmup: 5,
    workers: 1,
    concurrency: 128,
    clientProcs: 2,
    bufferBytes: DEFAULTS.sseClientBufferBytes,
    writeDocs: true,
  };
  const flags: Record<string, Exclude<keyof Options, "scenarios" | "writeDocs">> = {
    "--clients": "clients",
    "--agents": "agents",
    "--seconds": "seconds",
    "--warmup": "warmup",
    "--workers": "workers",
    "--concurrency": "concurrency",
    "--client-procs": "clientProcs",
    "--buffer-bytes": "bufferBytes",
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--no-docs") {
      o.writeDocs = false;
      continue;
    }
    if (a === "--scenarios") {
      const parsed = parseScenarios(args[++i] ?? "");
      if (!parsed) return "--scenarios takes F:R pairs, comma-separated (F clients on /events, R tasks per second)";
      o.scenarios = parsed;
      continue;
    }
    const key = flags[a];
    const n = Number(args[++i]);
    if (!key) return `unknown flag: ${a}`;
    if (!Number.isInteger(n) || n < (key === "warmup" ? 0 : 1) || n > 100_000_000) return `${a} takes a positive integer`;
    o[key] = n;
  }
  if (o.scenarios.some((s) => s.firehose > o.clients)) return "a scenario's firehose clients cannot exceed --clients";
  return o;
}

const wall = () => performance.timeOrigin + performance.now();

function benchDatabaseUrl(): string {
  if (process.env.BENCH_SSE_DATABASE_URL) return process.env.BENCH_SSE_DATABASE_URL;
  const u = new URL(process.env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  u.pathname = "/agentq_bench_sse";
  return u.toString();
}

function waitFor<T>(register: (resolve: (v: T) => void) => void, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** Sends what was written to a client process's stdin (a process that has exited is left alone). */
function flush(proc: Subprocess<"pipe", "pipe", "inherit">) {
  Promise.resolve()
    .then(() => proc.stdin.flush())
    .catch(() => {});
}

function percentile(sparse: Map<number, number>, total: number, q: number, bucketMs: number): number {
  const target = Math.ceil(total * q);
  let seen = 0;
  for (const b of [...sparse.keys()].sort((x, y) => x - y)) {
    seen += sparse.get(b)!;
    if (seen >= target) return (b + 0.5) * bucketMs;
  }
  return Number.NaN;
}

interface ClientResult {
  streams: number;
  counted: number;
  received: number;
  bytes: number;
  unmatched: number;
  maxMs: number;
  sparse: [number, number][];
  bus: { counted: number; maxMs: number; sparse: [number, number][] };
  bucketMs: number;
  ended: number;
}

interface Measured {
  scenario: Scenario;
  elapsedS: number;
  events: number;
  counted: number;
  perClient: number;
  p50: number;
  p99: number;
  p999: number;
  maxMs: number;
  busP50: number;
  busP99: number;
  rssIdle: number;
  rssConnected: number;
  rssMean: number;
  rssPeak: number;
  apiCpuPct: number;
  dropped: number;
  lagP50: number;
  lagP99: number;
  eventsPerMessage: number;
  coalesced: number;
  connectMs: number;
  unmatched: number;
  /** The machine's 1-minute load average at the start and the end of the window (other work on it shows here). */
  load: [number, number];
}

function merge(parts: [number, number][][]): { sparse: Map<number, number>; total: number } {
  const sparse = new Map<number, number>();
  let total = 0;
  for (const part of parts)
    for (const [b, n] of part) {
      sparse.set(b, (sparse.get(b) ?? 0) + n);
      total += n;
    }
  return { sparse, total };
}

/** One scenario: a fresh API process, its clients, an engine and the load; torn down after. */
async function measure(opts: Options, scenario: Scenario, runtime: Runtime, agents: string[], urls: { databaseUrl: string; redisUrl: string }): Promise<Measured> {
  const port = await freePort();
  const api = Bun.spawn(["bun", `${REPO}src/cli/api.ts`], {
    env: {
      ...(process.env as Record<string, string>),
      NODE_ENV: "production",
      DATABASE_URL: urls.databaseUrl,
      REDIS_URL: urls.redisUrl,
      AGENTQ_REDIS_PREFIX: REDIS_PREFIX,
      HOST: "127.0.0.1",
      PORT: String(port),
      AGENTQ_API_KEYS: API_KEY,
      AGENTQ_SSE_MAX_CLIENTS: String(opts.clients + 100),
      AGENTQ_SSE_CLIENT_BUFFER_BYTES: String(opts.bufferBytes),
      // Rate limits off: every client opens its stream with the one key at once (1,000 by default,
      // near AGENTQ_RATE_LIMIT_READ's default per window); the benchmark measures delivery.
      AGENTQ_RATE_LIMIT_ENQUEUE: "0",
      AGENTQ_RATE_LIMIT_READ: "0",
      LOG_LEVEL: "info",
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  let apiListening: (() => void) | null = null;
  const apiWarnings: string[] = [];
  lines(api, (line) => {
    if (line.includes('"api listening')) apiListening?.();
    if (apiWarnings.length < 20 && /"level":(40|50|60)/.test(line)) apiWarnings.push(line);
  });
  const clients: Subprocess<"pipe", "pipe", "inherit">[] = [];
  let engine: Engine | null = null;
  const timers: ReturnType<typeof setInterval>[] = [];
  try {
    await waitFor<void>((r) => (apiListening = r), 30_000, "the API process to listen");
    const base = `http://127.0.0.1:${port}/api/v1`;
    const idle = procStats(api.pid);

    // The client processes, each with its share of the plan; the first also listens to the bus itself.
    const plan = Array.from({ length: opts.clients }, (_, i) => (i < scenario.firehose ? "/events" : `/events?agent_id=${agents[i % agents.length]}`));
    const ready: Promise<void>[] = [];
    const results: Promise<ClientResult>[] = [];
    for (let p = 0; p < opts.clientProcs; p++) {
      const share = plan.filter((_, i) => i % opts.clientProcs === p);
      const proc = Bun.spawn(["bun", `${REPO}bench/sse/clients.ts`], {
        env: {
          ...(process.env as Record<string, string>),
          BENCH_SSE_BASE: base,
          BENCH_SSE_KEY: API_KEY,
          BENCH_SSE_PLAN: JSON.stringify(share),
          ...(p === 0 ? { BENCH_SSE_BUS_CHANNEL: queueKeys(REDIS_PREFIX).taskEventsChannel, BENCH_SSE_REDIS_URL: urls.redisUrl } : {}),
        },
        stdin: "pipe",
        stdout: "pipe",
        stderr: "inherit",
      });
      clients.push(proc);
      let onReady!: () => void;
      let onResult!: (r: ClientResult) => void;
      ready.push(new Promise((r) => (onReady = r)));
      results.push(new Promise((r) => (onResult = r)));
      lines(proc, (line) => {
        if (line.startsWith("READY ")) onReady();
        else if (line.startsWith("RESULT ")) onResult(JSON.parse(line.slice(7)) as ClientResult);
      });
    }
    const connectStart = performance.now();
    await waitFor<void>((r) => void Promise.all(ready).then(() => r()), 120_000, `${opts.clients} clients to connect`);
    const connectMs = performance.now() - connectStart;
    const connected = procStats(api.pid);
    console.log(
      `[${scenario.firehose} firehose, ${scenario.rate} tasks/s] ${opts.clients} clients connected in ${connectMs.toFixed(0)} ms; API RSS ${connected.rssMb.toFixed(1)} MB (idle ${idle.rssMb.toFixed(1)} MB)`,
    );

    // The engine; every supervisor event is stamped and the stamp sent to every client process.
    let supervisorEvents = 0;
    let sending = true;
    const send = (line: string) => {
      if (!sending) return;
      for (const c of clients) c.stdin.write(line);
    };
    const stamp = (e: SupervisorEvent) => {
      const t = wall();
      let key: string | null = null;
      if (e.type === "task_started") key = `${e.taskId}|status|running|0`;
      else if (e.type === "task_progress") key = `${e.taskId}|progress|running|${Math.max(0, Math.min(100, Math.round(e.percent)))}`;
      else if (e.type === "task_finished" && e.status === "completed") key = `${e.taskId}|status|completed|100`;
      if (!key) return;
      supervisorEvents++;
      send(`E ${key} ${t}\n`);
    };
    engine = await startEngine(runtime, {
      workers: opts.workers,
      concurrency: opts.concurrency,
      workerUrl: new URL("./workers/progress.ts", import.meta.url).href,
      observe: stamp,
      webhooks: false,
      onFatal: (e) => console.error(`engine fatal: ${e.message}`),
    });
    timers.push(
      setInterval(() => {
        for (const c of clients) flush(c);
      }, 2),
    );

    // Steady load: `rate` tasks per second, in 10 ms slices.
    const service = new TaskService(runtime);
    let enqueued = 0;
    const loadStart = performance.now();
    timers.push(
      setInterval(() => {
        const due = Math.floor(((performance.now() - loadStart) / 1000) * scenario.rate) - enqueued;
        for (let i = 0; i < due; i++) {
          const agent = agents[enqueued % agents.length]!;
          enqueued++;
          service.enqueueRefresh(agent, { priority: "medium", webhookUrl: null, force: true }).catch((e) => console.error(`enqueue failed: ${e}`));
        }
      }, 10),
    );
    const rssSamples: number[] = [];
    timers.push(setInterval(() => rssSamples.push(procStats(api.pid).rssMb), 250));

    await Bun.sleep(opts.warmup * 1000);
    send("RESET\n");
    const eventsAtStart = supervisorEvents;
    const published0 = { ...engine.taskEvents.stats };
    const cpu0 = procStats(api.pid);
    rssSamples.length = 0;
    // How late this process's event loop runs (the supervisor's main thread lives on it).
    const lag = monitorEventLoopDelay({ resolution: 5 });
    lag.enable();
    const load0 = os.loadavg()[0]!;
    const t0 = performance.now();
    await Bun.sleep(opts.seconds * 1000);
    const load1 = os.loadavg()[0]!;
    const elapsedS = (performance.now() - t0) / 1000;
    const cpu1 = procStats(api.pid);
    lag.disable();
    const events = supervisorEvents - eventsAtStart;
    const published1 = { ...engine.taskEvents.stats };
    for (const t of timers.splice(1)) clearInterval(t);
    // Let the window's last events arrive, then collect.
    await Bun.sleep(1000);
    send("STOP\n");
    // The client processes exit after STOP: nothing more goes to them (a write would fail with EPIPE).
    sending = false;
    for (const t of timers.splice(0)) clearInterval(t);
    for (const c of clients) flush(c);
    const got = await waitFor<ClientResult[]>((r) => void Promise.all(results).then(r), 60_000, "the client results");
    const metricsText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    if (apiWarnings.length > 0) console.log(`API warnings:\n${apiWarnings.join("\n")}`);

    const bucketMs = got[0]!.bucketMs;
    const delivery = merge(got.map((r) => r.sparse));
    const busHist = merge(got.map((r) => r.bus.sparse));
    const q = (h: ReturnType<typeof merge>, p: number) => percentile(h.sparse, h.total, p, bucketMs);
    return {
      scenario,
      elapsedS,
      events,
      counted: delivery.total,
      perClient: scenario.firehose + (opts.clients - scenario.firehose) / opts.agents,
      p50: q(delivery, 0.5),
      p99: q(delivery, 0.99),
      p999: q(delivery, 0.999),
      maxMs: Math.max(...got.map((r) => r.maxMs)),
      busP50: q(busHist, 0.5),
      busP99: q(busHist, 0.99),
      rssIdle: idle.rssMb,
      rssConnected: connected.rssMb,
      rssMean: rssSamples.reduce((a, b) => a + b, 0) / rssSamples.length,
      rssPeak: Math.max(...rssSamples),
      apiCpuPct: ((cpu1.cpuMs - cpu0.cpuMs) / (elapsedS * 1000)) * 100,
      dropped: Number(/^agentq_sse_clients_dropped_total (\S+)/m.exec(metricsText)?.[1] ?? Number.NaN),
      lagP50: lag.percentile(50) / 1e6,
      lagP99: lag.percentile(99) / 1e6,
      eventsPerMessage: (published1.published - published0.published) / Math.max(1, published1.messages - published0.messages),
      coalesced: published1.coalesced - published0.coalesced,
      connectMs,
      unmatched: got.reduce((a, r) => a + r.unmatched, 0),
      load: [load0, load1],
    };
  } finally {
    for (const t of timers) clearInterval(t);
    for (const c of clients) c.kill();
    await engine?.stop();
    api.kill("SIGTERM");
    await api.exited;
  }
}

export async function run(args: string[]): Promise<number> {
  const opts = parseCommandLine(args, HELP, parseArgs);
  if (typeof opts === "number") return opts;
  const urls = { databaseUrl: benchDatabaseUrl(), redisUrl: process.env.REDIS_URL ?? DEFAULTS.redisUrl };
  const config: Config = loadConfig({}, { ...urls, redisPrefix: REDIS_PREFIX, logLevel: "warn" });
  const runtime = await openRuntime(config, "bench-sse");
  try {
    const { sql } = runtime.database;
    const node = randomUUID();
    const measured: Measured[] = [];
    for (const scenario of opts.scenarios) {
      await sql.unsafe("truncate agents, background_tasks, coverage_history, webhook_deliveries, webhook_outbox, taxonomy_nodes, taxonomy_edges cascade");
      const stale = await runtime.redis.keys(`${REDIS_PREFIX}:*`);
      if (stale.length > 0) await runtime.redis.del(...stale);
      await upsertTaxonomy(runtime.database.db, "bench-sse", [{ node_id: node, label: "bench node" }]);
      const agents = (
        await sql<{ agent_id: string }[]>`
          insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level)
          select gen_random_uuid(), 'bench sse agent ' || i, array[${node}::uuid], 'bench-sse', 'one node', 1
          from generate_series(1, ${opts.agents}) as i returning agent_id`
      ).map((r) => r.agent_id);
      const m = await measure(opts, scenario, runtime, agents, urls);
      measured.push(m);
      console.log(
        `[${scenario.firehose} firehose, ${scenario.rate} tasks/s] ${(m.counted / m.elapsedS).toFixed(0)} deliveries/s, p50 ${m.p50.toFixed(2)} ms, p99 ${m.p99.toFixed(2)} ms, API RSS ${m.rssMean.toFixed(0)} MB mean / ${m.rssPeak.toFixed(0)} MB peak, ${m.dropped} dropped`,
      );
      if (m.unmatched > 0) console.log(`  (${m.unmatched} received events had no supervisor stamp)`);
    }
    const cell = (f: (m: Measured) => string) => measured.map(f).join(" | ");
    const rows: [string, string][] = [
      ["clients on GET /events (every event)", cell((m) => String(m.scenario.firehose))],
      [`clients on GET /events?agent_id= (one of ${opts.agents} agents each)`, cell((m) => String(opts.clients - m.scenario.firehose))],
      ["tasks per second (7 events each)", cell((m) => String(m.scenario.rate))],
      ["supervisor events per second", cell((m) => (m.events / m.elapsedS).toFixed(0))],
      ["deliveries (event x client) per second", cell((m) => `${(m.counted / m.elapsedS).toFixed(0)} (${m.perClient.toFixed(0)} clients per event)`)],
      ["**delivery latency p50**", cell((m) => `**${m.p50.toFixed(2)} ms**`)],
      ["**delivery latency p99**", cell((m) => `**${m.p99.toFixed(2)} ms**`)],
      ["delivery latency p99.9 / max", cell((m) => `${m.p999.toFixed(1)} / ${m.maxMs.toFixed(1)} ms`)],
      ["the bus alone p50 / p99 (supervisor event -> message at a subscriber of the benchmark's)", cell((m) => `${m.busP50.toFixed(2)} / ${m.busP99.toFixed(2)} ms`)],
      ["**API process RSS under load, mean / peak**", cell((m) => `**${m.rssMean.toFixed(0)} / ${m.rssPeak.toFixed(0)} MB**`)],
      ["API process RSS before any client / with every client connected, idle", cell((m) => `${m.rssIdle.toFixed(0)} / ${m.rssConnected.toFixed(0)} MB`)],
      ["API process CPU under load", cell((m) => `${m.apiCpuPct.toFixed(0)}% of a core`)],
      ["clients dropped as too slow", cell((m) => String(m.dropped))],
      ["engine: events per published message (progress folded into newer)", cell((m) => `${m.eventsPerMessage.toFixed(1)} (${m.coalesced})`)],
      ["engine process: event-loop delay p50 / p99", cell((m) => `${m.lagP50.toFixed(1)} / ${m.lagP99.toFixed(1)} ms`)],
      [`time to connect all ${opts.clients} clients`, cell((m) => `${m.connectMs.toFixed(0)} ms`)],
      ["machine load average (1 min), start / end of the window", cell((m) => `${m.load[0].toFixed(1)} / ${m.load[1].toFixed(1)}`)],
    ];
    const section = [
      SECTION_TITLE,
      "",
      `\`bun run bench sse --clients ${opts.clients} --scenarios ${opts.scenarios.map((s) => `${s.firehose}:${s.rate}`).join(",")} --agents ${opts.agents} --seconds ${opts.seconds} --warmup ${opts.warmup} --workers ${opts.workers} --concurrency ${opts.concurrency} --client-procs ${opts.clientProcs}${opts.bufferBytes !== DEFAULTS.sseClientBufferBytes ? ` --buffer-bytes ${opts.bufferBytes}` : ""}\``,
      `on ${os.cpus()[0]?.model ?? "unknown CPU"} (${os.cpus().length} cores), Bun ${Bun.version}, ${new Date().toISOString().slice(0, 10)}.`,
      `${opts.clients} SSE clients on ONE API process (\`bun src/cli/api.ts\`, production mode) while tasks run. The engine (supervisor and`,
      "worker threads) runs in the benchmark's process and the clients in processes of their own, all on this one machine",
      "with PostgreSQL and Redis. Latency is from the supervisor's event (stamped by a listener beside the publisher's) to",
      "the arrival at the client of the bytes that carried it, for every event at every client, over the measured window",
      `(${opts.seconds} s after ${opts.warmup} s of load); one clock (performance.timeOrigin + now, shared by the processes of one host).`,
      "RSS is the API process's VmRSS, sampled every 250 ms.",
      "",
      `| measure | ${measured.map((_, i) => `run ${i + 1}`).join(" | ")} |`,
      `|---|${measured.map(() => "---").join("|")}|`,
      ...rows.map(([k, v]) => `| ${k} | ${v} |`),
      "",
      "Reading it: the delivery latency is the bus's (supervisor event to a Redis subscriber, measured beside the API)",
      "plus the API's fan-out and the client's read; the API process uses a fraction of one core and drops no client.",
      "The tails come from the one machine every process shares (PostgreSQL, Redis, the engine, the clients parsing",
      "every event): the bus alone has them too, and they move with the load average from one run to the next. Events",
      "per published message rise with the event rate (the group commit). An API process has its RSS before any",
      "client connects (the first figure of the idle row): the streams cost the difference.",
      "",
    ].join("\n");
    console.log(`\n${section}`);
    if (opts.writeDocs) writeBenchmarkSection(SECTION_TITLE, section);
    return 0;
  } finally {
    const keys = await runtime.redis.keys(`${REDIS_PREFIX}:*`);
    if (keys.length > 0) await runtime.redis.del(...keys);
    await runtime.close();
  }
}
