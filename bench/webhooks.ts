/**
 * Webhook benchmark, in one run on one machine:
 *
 *  1. Task throughput with and without webhooks (the ratio is the cost of the
 *     outbox trigger and of the sender sharing the supervisor process): N tasks
 *     through the library path to durable completion, alternating rounds.
 *  2. Deliveries per second to a loopback receiver while those tasks run
 *     (first enqueue to last delivery recorded).
 *  3. Delivery success rate when the receiver fails half its requests at
 *     random, with the default retry schedule compressed (the same shape, every
 *     step scaled by one factor so the whole schedule spans --span-ms), and with
 *     the original plan's three doubling retries compressed by the same factor;
 *     how late attempts came against their due times.
 *
 * Own database `agentq_bench_webhooks` (BENCH_WEBHOOKS_DATABASE_URL overrides;
 * its tables are truncated) and Redis prefix `agentq-bench-webhooks`.
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import { DEFAULTS, loadConfig, type Config } from "../src/config.ts";
import { openRuntime, type Runtime } from "../src/main.ts";
import { startEngine, type Engine } from "../src/supervisor/engine.ts";
import type { SupervisorEvent } from "../src/supervisor/supervisor.ts";
import { TaskService } from "../src/tasks/service.ts";
import { upsertTaxonomy } from "../src/db/taxonomy.ts";
import { WebhookSender } from "../src/webhooks/sender.ts";
import { doublingSchedule, formatSchedule } from "../src/webhooks/schedule.ts";
import { bounded, parseCommandLine, writeBenchmarkSection } from "./support.ts";
import { parseFlags, type IntFlags } from "./flags.ts";

const REDIS_PREFIX = "agentq-bench-webhooks";
const SECRET = `whsec_${Buffer.from("agentq-bench-webhook-secret-0001").toString("base64")}`;
const AGENTS = 256;
const SECTION_TITLE = "## Webhooks";

interface Options {
  tasks: number;
  rounds: number;
  workers: number;
  flaky: number;
  spanMs: number;
  writeDocs: boolean;
}

/** Share of deliveries the default schedule must deliver against a receiver failing 50%. */
const REQUIRED_RATE = 0.99;

const HELP = `usage: bun run bench webhooks [--tasks N] [--rounds R] [--workers W] [--flaky F] [--span-ms S] [--no-docs]

  --tasks N       tasks per throughput measurement (default 1000)
  --rounds R      rounds of (without webhooks, with webhooks); the median ratio is reported (default 3)
  --workers W     worker threads (default 4)
  --flaky F       deliveries for the success-rate runs against a receiver failing 50% (default 2000)
  --span-ms S     the default retry schedule (AGENTQ_WEBHOOK_SCHEDULE's default, 75 h 35 min) is
                  compressed to span S ms, every step scaled by the same factor (default 10000)
  --no-docs       do not rewrite the "${SECTION_TITLE}" section of docs/benchmarks.md`;

function parseArgs(args: string[]): Options | string {
  const o: Options = { tasks: 1000, rounds: 3, workers: 4, flaky: 2000, spanMs: 10_000, writeDocs: true };
  const ints: IntFlags<Exclude<keyof Options, "writeDocs">> = {
    "--tasks": ["tasks", 1, 1_000_000],
    "--rounds": ["rounds", 1, 1_000_000],
    "--workers": ["workers", 1, 1_000_000],
    "--flaky": ["flaky", 1, 1_000_000],
    "--span-ms": ["spanMs", 1, 1_000_000],
  };
  const error = parseFlags(args, ints, (key, n) => (o[key] = n), (flag) => (flag === "--no-docs" ? ((o.writeDocs = false), 1) : 0));
  if (error) return error;
  return o;
}

const now = () => performance.now();

/** Resolves when `check` holds, re-checked whenever `poke` is called (events), with a deadline. */
class Waiter {
  private pending: (() => void)[] = [];
  poke() {
    for (const p of this.pending.splice(0)) p();
  }
  async until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, recheckMs = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        this.pending.push(resolve);
        if (recheckMs > 0) setTimeout(resolve, recheckMs);
      });
    }
  }
}

/** A loopback receiver; `failRatio` of requests answer 500 at random. Records when each webhook-id arrived. */
function startReceiver(waiter: Waiter) {
  const state = { failRatio: 0, requests: 0, delivered: new Set<string>(), arrivals: new Map<string, number[]>() };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const at = Date.now();
      await request.arrayBuffer();
      state.requests++;
      const id = request.headers.get("webhook-id") ?? "";
      const seen = state.arrivals.get(id);
      if (seen) seen.push(at);
      else state.arrivals.set(id, [at]);
      if (Math.random() < state.failRatio) return new Response("try again", { status: 500 });
      state.delivered.add(request.headers.get("webhook-id") ?? "");
      waiter.poke();
      return new Response(null, { status: 204 });
    },
  });
  return { state, url: `http://127.0.0.1:${server.port}/hook`, stop: () => server.stop(true) };
}

interface Bench {
  runtime: Runtime;
  engine: Engine;
  service: TaskService;
  agents: string[];
  finished: number;
  waiter: Waiter;
}

function benchDatabaseUrl(): string {
  if (process.env.BENCH_WEBHOOKS_DATABASE_URL) return process.env.BENCH_WEBHOOKS_DATABASE_URL;
  const u = new URL(process.env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  u.pathname = "/agentq_bench_webhooks";
  return u.toString();
}

async function prepare(opts: Options): Promise<Bench> {
  const config: Config = loadConfig(
    {},
    {
      databaseUrl: benchDatabaseUrl(),
      redisUrl: process.env.REDIS_URL ?? DEFAULTS.redisUrl,
      redisPrefix: REDIS_PREFIX,
      logLevel: "warn",
      webhookSecrets: [SECRET],
      webhookAllowHttp: true,
      webhookAllowedHosts: ["127.0.0.1"],
      webhookConcurrency: 64,
    },
  );
  const runtime = await openRuntime(config, "bench-webhooks");
  const { sql } = runtime.database;
  await sql.unsafe("truncate agents, background_tasks, coverage_history, webhook_deliveries, webhook_outbox, taxonomy_nodes, taxonomy_edges cascade");
  const node = randomUUID();
  await upsertTaxonomy(runtime.database.db, "bench-webhooks", [{ node_id: node, label: "bench node" }]);
  const rows = await sql<{ agent_id: string }[]>`
    insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level)
    select gen_random_uuid(), 'bench webhooks agent ' || i, array[${node}::uuid], 'bench-webhooks', 'one node', 1
    from generate_series(1, ${AGENTS}) as i returning agent_id`;
  const waiter = new Waiter();
  const engine = await startEngine(runtime, { workers: opts.workers, onFatal: (e) => console.error(`engine fatal: ${e.message}`) });
  const bench: Bench = { runtime, engine, service: new TaskService(runtime), agents: rows.map((r) => r.agent_id), finished: 0, waiter };
  engine.supervisor.on((e: SupervisorEvent) => {
    if (e.type === "task_finished") {
      bench.finished++;
      waiter.poke();
    }
  });
  return bench;
}

async function reset(b: Bench) {
  await b.runtime.database.sql`truncate background_tasks, task_attempts, coverage_history, webhook_deliveries, webhook_outbox`;
  b.finished = 0;
}

async function outboxCounts(b: Bench): Promise<Record<string, number>> {
  const rows = await b.runtime.database.sql<{ status: string; n: number }[]>`select status, count(*)::int as n from webhook_outbox group by status`;
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Enqueues `tasks` refreshes (with or without a webhook) and waits for every task to finish. */
async function runTasks(b: Bench, tasks: number, webhookUrl: string | null): Promise<{ wallMs: number; t0: number }> {
  await reset(b);
  const t0 = now();
  await bounded(tasks, 64, async (i) => {
    await b.service.enqueueRefresh(b.agents[i % b.agents.length]!, { priority: "medium", webhookUrl, force: true });
  });
  await b.waiter.until(() => b.finished >= tasks, 300_000, `${tasks} tasks`);
  return { wallMs: now() - t0, t0 };
}

interface Round {
  plainPerSecond: number;
  hookedPerSecond: number;
  deliveriesPerSecond: number;
}

async function throughputRound(b: Bench, receiver: ReturnType<typeof startReceiver>, tasks: number): Promise<Round> {
  const plain = await runTasks(b, tasks, null);
  receiver.state.failRatio = 0;
  receiver.state.delivered.clear();
  const hooked = await runTasks(b, tasks, receiver.url);
  await b.waiter.until(async () => receiver.state.delivered.size >= tasks, 300_000, "deliveries to arrive");
  // The last delivery counts once it is recorded, not only received.
  await b.waiter.until(async () => (await outboxCounts(b)).delivered === tasks, 60_000, "deliveries to be recorded", 20);
  const deliveredMs = now() - hooked.t0;
  return {
    plainPerSecond: tasks / (plain.wallMs / 1000),
    hookedPerSecond: tasks / (hooked.wallMs / 1000),
    deliveriesPerSecond: tasks / (deliveredMs / 1000),
  };
}

/**
 * How late retries came: for every attempt after the first, its arrival at the receiver
 * minus the due time the attempt before it recorded (next_attempt_at). One clock: PostgreSQL
 * and this process run on the same host.
 */
async function lateness(b: Bench, arrivals: Map<string, number[]>): Promise<{ p50: number; p99: number; max: number }> {
  const rows = await b.runtime.database.sql<{ webhook_id: string; attempt: number; due_ms: number }[]>`
    select o.webhook_id, d.attempt, extract(epoch from d.next_attempt_at) * 1000 as due_ms
    from webhook_deliveries d join webhook_outbox o on o.task_id = d.task_id
    where d.next_attempt_at is not null`;
  const late: number[] = [];
  for (const row of rows) {
    const arrived = arrivals.get(row.webhook_id)?.[row.attempt]; // attempt k's retry is arrival k (0-based)
    if (arrived !== undefined) late.push(arrived - Number(row.due_ms));
  }
  late.sort((x, y) => x - y);
  const at = (q: number) => late[Math.min(late.length - 1, Math.floor(q * late.length))] ?? 0;
  return { p50: at(0.5), p99: at(0.99), max: late.at(-1) ?? 0 };
}

interface RateRun {
  label: string;
  schedule: number[];
  delivered: number;
  dead: number;
  rate: number;
  requests: number;
  wallMs: number;
  late: { p50: number; p99: number; max: number };
}

/** Ends `count` tasks with webhooks against a receiver failing half the time; the share delivered. */
async function successRate(b: Bench, receiver: ReturnType<typeof startReceiver>, count: number, label: string, schedule: number[]): Promise<RateRun> {
  await b.engine.webhooks?.stop();
  const sender = new WebhookSender({
    config: { ...b.runtime.config, webhookSchedule: schedule, webhookConcurrency: 256 },
    database: b.runtime.database,
    // Dead deliveries are the point of this run; do not log each one.
    logger: b.runtime.logger.child({}, { level: "error" }),
  });
  await sender.start();
  receiver.state.failRatio = 0.5;
  receiver.state.requests = 0;
  receiver.state.arrivals.clear();
  const t0 = now();
  await runTasks(b, count, receiver.url);
  await b.waiter.until(async () => ((await outboxCounts(b)).pending ?? 0) === 0, 600_000, "every delivery to finish", 100);
  const wallMs = now() - t0;
  const counts = await outboxCounts(b);
  const late = await lateness(b, receiver.state.arrivals);
  await sender.stop();
  await b.engine.webhooks?.start();
  const delivered = counts.delivered ?? 0;
  return { label, schedule, delivered, dead: counts.dead ?? 0, rate: delivered / count, requests: receiver.state.requests, wallMs, late };
}

/** The schedule with every step multiplied by `factor` (fractional milliseconds: the shape is kept exactly). */
const compress = (schedule: readonly number[], factor: number) => schedule.map((ms) => ms * factor);
const showMs = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(0));
const sum = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

export async function run(args: string[]): Promise<number> {
  const opts = parseCommandLine(args, HELP, parseArgs);
  if (typeof opts === "number") return opts;
  const b = await prepare(opts);
  const waiterReceiver = startReceiver(b.waiter);
  try {
    console.log(`warm-up (${Math.min(200, opts.tasks)} tasks with webhooks)...`);
    await runTasks(b, Math.min(200, opts.tasks), waiterReceiver.url);
    // Its deliveries must be recorded before the next round truncates the outbox under them.
    await b.waiter.until(async () => ((await outboxCounts(b)).pending ?? 0) === 0 && (b.engine.webhooks?.busy ?? 0) === 0, 60_000, "warm-up deliveries", 20);
    const rounds: Round[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const round = await throughputRound(b, waiterReceiver, opts.tasks);
      rounds.push(round);
      console.log(
        `round ${r + 1}: ${round.plainPerSecond.toFixed(0)} tasks/s without webhooks, ${round.hookedPerSecond.toFixed(0)} with; ${round.deliveriesPerSecond.toFixed(0)} deliveries/s`,
      );
    }
    const factor = opts.spanMs / sum(DEFAULTS.webhookSchedule);
    const rates: RateRun[] = [];
    for (const [label, schedule] of [
      ["default schedule", compress(DEFAULTS.webhookSchedule, factor)],
      ["original plan (3 retries, doubling from 1 s)", compress(doublingSchedule(3, 1000), factor)],
    ] as const) {
      const rate = await successRate(b, waiterReceiver, opts.flaky, label, [...schedule]);
      rates.push(rate);
      console.log(
        `50% failing receiver, ${label} compressed to ${schedule.map(showMs).join(",")} ms: ${(rate.rate * 100).toFixed(2)}% delivered (${rate.dead} dead, ${rate.requests} requests, ${(rate.wallMs / 1000).toFixed(1)} s; attempts late p50 ${rate.late.p50.toFixed(1)} ms, p99 ${rate.late.p99.toFixed(1)} ms)`,
      );
    }
    const headline = rates[0]!;
    const passed = headline.rate >= REQUIRED_RATE;
    console.log(`${passed ? "PASS" : "FAIL"}: the default schedule delivered ${(headline.rate * 100).toFixed(2)}% (required: at least ${REQUIRED_RATE * 100}%)`);
    const ratios = rounds.map((r) => r.hookedPerSecond / r.plainPerSecond);
    const section = [
      SECTION_TITLE,
      "",
      `\`bun run bench webhooks --tasks ${opts.tasks} --rounds ${opts.rounds} --workers ${opts.workers} --flaky ${opts.flaky} --span-ms ${opts.spanMs}\``,
      `on ${os.cpus()[0]?.model ?? "unknown CPU"} (${os.cpus().length} cores), Bun ${Bun.version}, ${new Date().toISOString().slice(0, 10)}.`,
      "Engine, sender and receiver share this one process (the receiver is a loopback `Bun.serve`); tasks are the",
      "real coverage refresh of a one-node agent, enqueued through the library path, measured to durable completion.",
      "",
      "| measure | median | rounds |",
      "|---|---:|---|",
      `| tasks/s without webhooks | ${median(rounds.map((r) => r.plainPerSecond)).toFixed(0)} | ${rounds.map((r) => r.plainPerSecond.toFixed(0)).join(", ")} |`,
      `| tasks/s with a webhook each | ${median(rounds.map((r) => r.hookedPerSecond)).toFixed(0)} | ${rounds.map((r) => r.hookedPerSecond.toFixed(0)).join(", ")} |`,
      `| **ratio with / without** | **${median(ratios).toFixed(2)}** | ${ratios.map((x) => x.toFixed(2)).join(", ")} |`,
      `| deliveries/s (first enqueue to last delivery recorded) | ${median(rounds.map((r) => r.deliveriesPerSecond)).toFixed(0)} | ${rounds.map((r) => r.deliveriesPerSecond.toFixed(0)).join(", ")} |`,
      "",
      `Receiver failing 50% of requests at random, ${opts.flaky} deliveries per run. The default retry schedule`,
      `(\`AGENTQ_WEBHOOK_SCHEDULE\` = \`${formatSchedule(DEFAULTS.webhookSchedule)}\`, Standard Webhooks' example: ten attempts over`,
      `${(sum(DEFAULTS.webhookSchedule) / 3_600_000).toFixed(2)} h) runs compressed: every step multiplied by ${factor.toExponential(3)}, so the whole schedule spans`,
      `${opts.spanMs} ms (the 5 s step becomes ${showMs(compress([5000], factor)[0]!)} ms, 24 h becomes ${showMs(compress([86_400_000], factor)[0]!)} ms), with the production jitter`,
      `(±${DEFAULTS.webhookJitter * 100}%). Each retry waits in the outbox (\`next_attempt_at\`), as in production; "late" is from a`,
      "retry's due time to its arrival at the receiver (the sender's wake-up, the claim, signing and the request, with up to 256",
      "deliveries in flight and the engine running the tasks, on 2 cores). Compressed, the first steps are",
      "fractions of a millisecond, so half of each burst of endings is due again at once and waits for one of",
      "the sender's 256 slots: the lateness is that queue, a few hundred milliseconds, where the real steps are",
      "seconds to hours.",
      "",
      "| schedule | compressed steps (ms) | attempts at most | delivered | dead | requests | expected (1 - 0.5^attempts) | late p50 / p99 | wall |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|",
      ...rates.map(
        (r) =>
          `| ${r.label} | ${r.schedule.map(showMs).join(", ")} | ${r.schedule.length + 1} | ${r === headline ? "**" : ""}${(r.rate * 100).toFixed(2)}%${r === headline ? "**" : ""} | ${r.dead} | ${r.requests} | ${((1 - 0.5 ** (r.schedule.length + 1)) * 100).toFixed(2)}% | ${r.late.p50.toFixed(1)} / ${r.late.p99.toFixed(1)} ms | ${(r.wallMs / 1000).toFixed(1)} s |`,
      ),
      "",
      `${passed ? "Passes" : "FAILS"} the requirement of at least ${REQUIRED_RATE * 100}% delivered with the default schedule. Against a receiver that`,
      "fails half its requests independently, ten attempts reach it 99.90% of the time in expectation; the",
      "original plan's three quick retries (four attempts, 93.75%) remain expressible (`AGENTQ_WEBHOOK_SCHEDULE=1s,2s,4s`,",
      "or `AGENTQ_WEBHOOK_RETRIES=3 AGENTQ_WEBHOOK_BACKOFF_MS=1000`). Dead deliveries stay in the outbox;",
      "`POST /webhooks/deliveries/redeliver` sends them again.",
      "",
    ].join("\n");
    console.log(`\n${section}`);
    if (opts.writeDocs) writeBenchmarkSection(SECTION_TITLE, section);
    return passed ? 0 : 1;
  } finally {
    waiterReceiver.stop();
    await b.engine.stop();
    await b.runtime.redis.del(...(await b.runtime.redis.keys(`${REDIS_PREFIX}:*`)), `${REDIS_PREFIX}:none`);
    await b.runtime.close();
  }
}
