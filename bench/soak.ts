/**
 * Soak test: `bun run bench soak --minutes 10`.
 *
 *  1. Capacity, in the same run and on the same setup: a burn-down of tiny refreshes with a
 *     webhook each (bench/soak/capacity.ts).
 *  2. Steady load at half that capacity for the given minutes, against an API process and a
 *     supervisor process started as an operator starts them (bench/soak/services.ts): refreshes
 *     over HTTP from several clients with a webhook each to a loopback receiver failing a few
 *     percent (retries), a running task cancelled every few seconds, SSE clients on the live
 *     events endpoint, and the supervisor's reconciler on its default period.
 *  3. A sample every 10 s (bench/soak/sampler.ts): RSS of both processes, PostgreSQL
 *     connections, Redis memory, the backlog.
 *  4. The verdict: after the warm-up, every judged series flat (bench/soak/series.ts,
 *     flatness.ts); once drained, nothing lost or doubled (bench/soak/accounting.ts).
 *  5. docs/images/soak.png (uPlot in Chromium, bench/soak/chart.ts) and the "Soak test" section
 *     of docs/benchmarks.md (bench/soak/report.ts).
 */
import { parseCommandLine, writeBenchmarkSection } from "./support.ts";
import { HELP, parseSoakArgs, SECTION_TITLE, type SoakOptions } from "./soak/options.ts";
import { deletePrefix, prepareWorld, type World } from "./soak/setup.ts";
import { startSoakReceiver } from "./soak/receiver.ts";
import { startApi, type Service } from "./soak/services.ts";
import { measureCapacity } from "./soak/capacity.ts";
import { startCanceller, startRefreshLoad } from "./soak/load.ts";
import { startSseClients } from "./soak/sse.ts";
import { takeSample, type SoakSample } from "./soak/sampler.ts";
import { account } from "./soak/accounting.ts";
import { judgeAll, poolBounds, seriesSpecs } from "./soak/series.ts";
import { warmupFor } from "./soak/flatness.ts";
import { chartData, renderChart } from "./soak/chart.ts";
import { consoleReport, docsSection, type SoakResult } from "./soak/report.ts";

const SAMPLE_EVERY_MS = 10_000;
const DRAIN_TIMEOUT_MS = 180_000;
/** Requests in flight during the capacity burn-down: enough that the API and the engine, not the client, set the pace. */
const BURN_IN_FLIGHT = 64;
const CHART_FILE = new URL("../docs/images/soak.png", import.meta.url).pathname;

/** Waits until nothing is pending or running and no delivery is left to make. */
async function drain(world: World): Promise<number> {
  const t0 = performance.now();
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    const [row] = await world.runtime.database.sql<{ open: number; outbox: number }[]>`
      select (select count(*) from background_tasks where status in ('pending', 'running'))::int as open,
             (select count(*) from webhook_outbox where status = 'pending')::int as outbox`;
    if (row!.open === 0 && row!.outbox === 0) return performance.now() - t0;
    if (Date.now() > deadline) {
      console.error(`still ${row!.open} tasks open and ${row!.outbox} deliveries pending after ${DRAIN_TIMEOUT_MS} ms`);
      return performance.now() - t0;
    }
    await Bun.sleep(250);
  }
}

async function soak(opts: SoakOptions, world: World, api: Service, services: Service[]): Promise<SoakResult> {
  const receiver = startSoakReceiver(opts.failPercent / 100);
  try {
    const base = `${api.origin}/api/v1`;
    const sse = startSseClients({ base, firehose: opts.sseFirehose, filtered: opts.sseFiltered, agents: world.tiny });
    console.log(`capacity: burn-down of ${opts.burn} tiny refreshes over HTTP with a webhook each, supervisor ${opts.workers} x ${opts.concurrency} ...`);
    const capacity = await measureCapacity(world, {
      base,
      tasks: opts.burn,
      inFlight: BURN_IN_FLIGHT,
      workers: opts.workers,
      concurrency: opts.concurrency,
      webhookUrl: receiver.url,
    });
    services.push(capacity.supervisor);
    const rate = capacity.perSecond / 2;
    console.log(
      `capacity ${capacity.perSecond.toFixed(0)} tasks/s with their webhooks (${capacity.tasksPerSecond.toFixed(0)} tasks/s to the last task end); soak at ${rate.toFixed(0)} tasks/s for ${opts.minutes} min`,
    );
    const handedOut = new Set<string>(capacity.taskIds);
    const load = startRefreshLoad({ base, agents: world.tiny, rate, clients: opts.clients, webhookUrl: receiver.url });
    const cancels = startCanceller({ base, heavyAgent: world.heavy, everyMs: opts.cancelEveryS * 1000, webhookUrl: receiver.url });
    const pids = { api: api.proc.pid, supervisor: capacity.supervisor.proc.pid };
    const samples: SoakSample[] = [];
    const start = performance.now();
    const loadMs = opts.minutes * 60_000;
    for (let k = 0; k * SAMPLE_EVERY_MS <= loadMs; k++) {
      const wait = start + k * SAMPLE_EVERY_MS - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      const s = await takeSample(world.runtime, pids, world.database, (performance.now() - start) / 1000, load.sent);
      samples.push(s);
      console.log(
        `t=${s.t.toFixed(0).padStart(4)} s  RSS API ${s.apiRssMb.toFixed(1)} MB, supervisor ${s.supervisorRssMb.toFixed(1)} MB; PG conns ${s.apiConnections}+${s.supervisorConnections}; ` +
          `Redis ${s.redisUsedMb.toFixed(1)} MB (prefix ${s.prefixKeys} keys, ${s.prefixKb.toFixed(1)} KiB); pending ${s.pendingTasks}, queued ${s.queuedIds}, running ${s.runningTasks}, webhooks ${s.webhooksPending}; ` +
          `sent ${s.sent}/${load.due()}; cancels ${cancels.cancelledRunning}; SSE events ${sse.events}`,
      );
    }
    const elapsedS = (performance.now() - start) / 1000;
    await load.stop();
    await cancels.stop();
    const drainMs = await drain(world);
    sse.stop();
    for (const id of load.taskIds) handedOut.add(id);
    for (const id of cancels.taskIds) handedOut.add(id);
    const accounting = await account(world.runtime, handedOut, receiver.accepted);
    const warmupS = warmupFor(opts.minutes * 60);
    const judged = judgeAll(samples, seriesSpecs(rate, poolBounds(opts.workers, opts.concurrency)), warmupS);
    return {
      opts,
      capacity: { tasks: capacity.tasks, perSecond: capacity.perSecond, tasksPerSecond: capacity.tasksPerSecond, spanMs: capacity.spanMs },
      rate,
      elapsedS,
      samples,
      judged,
      warmupS,
      load: { sent: load.sent, accepted: load.accepted, due: Math.floor(elapsedS * rate), errors: Object.fromEntries(load.errors) },
      cancels: {
        cancelledRunning: cancels.cancelledRunning,
        finishedFirst: cancels.finishedFirst,
        notSeenRunning: cancels.notSeenRunning,
        errors: cancels.errors,
        latenciesMs: cancels.latenciesMs,
      },
      sse: { streams: sse.streams, events: sse.events, bytes: sse.bytes, reopened: sse.reopened },
      receiver: { requests: receiver.requests, failed: receiver.failed, accepted: receiver.accepted.size },
      drainMs,
      accounting,
      warnings: services.map((s) => ({ name: s.name, count: s.warningCount, first: s.warnings.slice(0, 3), byMessage: Object.fromEntries(s.warningsByMessage) })),
    };
  } finally {
    receiver.stop();
  }
}

export async function run(args: string[]): Promise<number> {
  const opts = parseCommandLine(args, HELP, parseSoakArgs);
  if (typeof opts === "number") return opts;
  const world = await prepareWorld();
  console.log(`soak: database ${world.database}, Redis prefix agentq-bench-soak; ${world.tiny.length} tiny agents and one heavy agent`);
  const services: Service[] = [];
  try {
    const api = await startApi(world.env);
    services.push(api);
    const result = await soak(opts, world, api, services);
    for (const line of consoleReport(result)) console.log(line);
    const passed = result.judged.every((j) => !j.spec.bound || j.verdict.pass) && result.accounting.ok;
    if (opts.writeDocs) {
      const data = chartData(
        `agentq soak: ${opts.minutes} min at ${result.rate.toFixed(0)} tasks/s (half of the ${result.capacity.perSecond.toFixed(0)} tasks/s measured); warm-up shaded, trends dashed`,
        result.samples,
        result.judged,
        result.warmupS,
      );
      await renderChart(data, CHART_FILE);
      writeBenchmarkSection(SECTION_TITLE, docsSection(result));
      console.log(`wrote docs/images/soak.png and the "${SECTION_TITLE}" section of docs/benchmarks.md`);
    }
    console.log(passed ? "PASS: every judged series is flat and nothing was lost or doubled" : "FAIL: see above");
    return passed ? 0 : 1;
  } finally {
    for (const s of services.reverse()) {
      const code = await s.stop();
      if (code !== 0) console.error(`${s.name} exited with ${code}`);
    }
    await deletePrefix(world.runtime).catch((e) => console.error(`could not clean the prefix: ${String(e)}`));
    await world.runtime.close();
  }
}
