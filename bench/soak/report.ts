/** The soak's result: a table of the series with their verdicts, the accounting, and the docs section. */
import os from "node:os";
import type { Accounting } from "./accounting.ts";
import type { SoakOptions } from "./options.ts";
import type { SoakSample } from "./sampler.ts";
import { WINDOW_S, type Judged } from "./series.ts";

export interface SoakResult {
  opts: SoakOptions;
  capacity: { tasks: number; perSecond: number; tasksPerSecond: number; spanMs: number };
  rate: number;
  elapsedS: number;
  samples: SoakSample[];
  judged: Judged[];
  warmupS: number;
  load: { sent: number; accepted: number; due: number; errors: Record<string, number> };
  cancels: { cancelledRunning: number; finishedFirst: number; notSeenRunning: number; errors: number; latenciesMs: number[] };
  sse: { streams: number; events: number; bytes: number; reopened: number };
  receiver: { requests: number; failed: number; accepted: number };
  drainMs: number;
  accounting: Accounting;
  warnings: { name: string; count: number; first: string[]; byMessage: Record<string, number> }[];
}

const num = (x: number) => (!Number.isFinite(x) ? "-" : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2));
const signed = (x: number) => (Number.isFinite(x) && x >= 0 ? `+${num(x)}` : num(x));

function seriesTable(r: SoakResult): string[] {
  const rows = r.judged.map((j) => {
    const v = j.verdict;
    const unit = j.spec.unit ? ` ${j.spec.unit}` : "";
    const verdict = j.spec.bound ? (v.pass ? "PASS" : `**FAIL**`) : "shown, not judged";
    const allowed = j.spec.bound ? `${num(v.allowed)}${unit}` : "-";
    return `| ${j.spec.label} | ${num(j.first)} / ${num(j.last)}${unit} | ${num(j.min)} to ${num(j.max)}${unit} | ${signed(v.slope * 60)}${unit}/min | ${signed(v.growth)}${unit} | ${allowed} | ${verdict} |`;
  });
  return [
    `| series | after warm-up, first / last | range | least-squares slope | growth per 10 min | allowed per 10 min | verdict |`,
    "|---|---:|---:|---:|---:|---:|---|",
    ...rows,
  ];
}

function accountingLines(a: Accounting, r: SoakResult): string[] {
  const statuses = Object.entries(a.byStatus)
    .map(([s, n]) => `${n} ${s}`)
    .join(", ");
  const outbox = Object.entries(a.outbox)
    .map(([s, n]) => `${n} ${s}`)
    .join(", ");
  return [
    `- tasks: ${a.tasks} (${statuses}); not terminal: ${a.notTerminal}; handed out but missing: ${a.missing}; present but never handed out: ${a.extra}`,
    `- coverage_history: ${a.historyRowsOfCompleted} rows for ${a.byStatus.completed ?? 0} completed tasks; completed without a row: ${a.completedWithoutHistory}; rows not one-per-completed-task: ${a.strayHistory}`,
    `- webhooks: ${a.withWebhook} tasks with a webhook_url; outbox ${outbox}; terminal tasks without an outbox row: ${a.outboxMissing}; recorded delivered but never accepted by the receiver: ${a.deliveredNotReceived}; dead without a reason: ${a.deadWithoutReason}; accepted twice (at-least-once): ${a.receivedTwice}`,
    `- receiver: ${r.receiver.requests} requests, ${r.receiver.failed} answered 503 on purpose (retried), ${r.receiver.accepted} webhook-ids accepted`,
    `- **${a.ok ? "nothing lost or doubled" : `PROBLEMS: ${a.problems.join("; ")}`}**`,
  ];
}

function leakNote(r: SoakResult): string {
  const tasksPerWindow = r.rate * WINDOW_S;
  const rss = r.judged.find((j) => j.spec.key === "supervisorRssMb");
  if (!rss) return "";
  const bytes = (rss.verdict.allowed * 1048576) / tasksPerWindow;
  return `At ${r.rate.toFixed(0)} tasks/s, 10 minutes are ${Math.round(tasksPerWindow).toLocaleString("en")} tasks: the RSS bound catches a leak of ${bytes.toFixed(0)} bytes or more per task (or per request).`;
}

const warningText = (w: SoakResult["warnings"][number]) =>
  `${w.name} ${w.count}${w.count ? ` (${Object.entries(w.byMessage).map(([m, n]) => `${n}x "${m}"`).join(", ")})` : ""}`;

export function consoleReport(r: SoakResult): string[] {
  return [
    "",
    `steady load: ${r.elapsedS.toFixed(0)} s at ${r.rate.toFixed(0)} tasks/s; ${r.load.accepted} refreshes accepted of ${r.load.sent} sent (${r.load.due} due)${Object.keys(r.load.errors).length ? `, errors ${JSON.stringify(r.load.errors)}` : ""}`,
    `cancels: ${r.cancels.cancelledRunning} running tasks cancelled, ${r.cancels.finishedFirst} finished first, ${r.cancels.notSeenRunning} never seen running, ${r.cancels.errors} errors`,
    `SSE: ${r.sse.streams} streams, ${r.sse.events} events, ${(r.sse.bytes / 1048576).toFixed(1)} MiB, ${r.sse.reopened} reopened`,
    `drained in ${(r.drainMs / 1000).toFixed(1)} s; warm-up ${r.warmupS} s`,
    ...r.warnings.map((w) => `${w.name}: ${w.count} log lines at warn or above${w.first.length ? `, first: ${w.first.join(" | ").slice(0, 600)}` : ""}`),
    "",
    ...seriesTable(r),
    "",
    leakNote(r),
    ...accountingLines(r.accounting, r),
  ];
}

const p = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]! : Number.NaN;
};

export function docsSection(r: SoakResult): string {
  const o = r.opts;
  const judgedOk = r.judged.every((j) => !j.spec.bound || j.verdict.pass);
  const cpus = os.cpus();
  return [
    "## Soak test",
    "",
    `\`bun run bench soak --minutes ${o.minutes}\`${o.burn !== 3000 || o.workers !== 2 || o.concurrency !== 32 || o.clients !== 8 ? ` (with --burn ${o.burn} --workers ${o.workers} --concurrency ${o.concurrency} --clients ${o.clients})` : ""}`,
    `on ${cpus[0]?.model ?? "unknown CPU"} (${cpus.length} cores, shared with other work during the run), Bun ${Bun.version}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC.`,
    "",
    "Setup: an API process (`bun src/cli/api.ts`) and a supervisor process (`bun src/cli/supervisor.ts",
    `--workers ${o.workers} --concurrency ${o.concurrency}\`), started as an operator starts them, on a database and a Redis prefix of`,
    "their own, with rate limits on (far above the load) and webhooks signed to a loopback receiver. The benchmark's",
    "process holds the clients, the receiver and the sampler.",
    "",
    `1. **Capacity**, measured first in the same run on the same processes: ${r.capacity.tasks} tiny refreshes (one-node agents), each`,
    "   with a webhook, POSTed to the API 64 at a time while the supervisor drains them and the SSE clients follow.",
    "   From the first request to the last delivery recorded (PostgreSQL's timestamps, the same host's clock):",
    `   **${r.capacity.perSecond.toFixed(0)} tasks/s** with their webhooks (${r.capacity.tasksPerSecond.toFixed(0)} tasks/s to the last task end). The burn-down goes`,
    "   through the API because the soak's load does: drained by the supervisor alone (tasks written first), it",
    "   overstated what the whole path sustains, and a load at half of that figure built a backlog on this machine.",
    `2. **Steady load at half of it, ${r.rate.toFixed(0)} tasks/s, for ${(r.elapsedS / 60).toFixed(1)} minutes**: ${o.clients} HTTP clients POST`,
    "   `/agents/{id}/coverage/refresh?force=true` with a `webhook_url` (open loop: each request has its due time);",
    `   the receiver answers 503 to ${o.failPercent}% of webhook requests at random, so retries run too (\`AGENTQ_WEBHOOK_SCHEDULE=1s,2s,4s\`);`,
    `   every ${o.cancelEveryS} s a refresh of a heavy agent (60,000 documents on its node: a few hundred ms in PostgreSQL) is`,
    "   watched until running, then cancelled with `DELETE /tasks/{id}`;",
    `   ${o.sseFirehose + o.sseFiltered} SSE clients follow \`GET /events\` (${o.sseFirehose} unfiltered, ${o.sseFiltered} on one agent each); the supervisor's reconciler runs every`,
    "   5 s (its default).",
    "3. **Every 10 s**: VmRSS of each process (the supervisor's worker threads are in its process), its connections",
    "   in `pg_stat_activity` (by `application_name`), Redis `used_memory` and the soak prefix's keys and bytes",
    "   (`SCAN` + `MEMORY USAGE`), and the backlog (pending tasks, queued ids, webhooks still to deliver).",
    "",
    `Load delivered: ${r.load.accepted.toLocaleString("en")} refreshes accepted of ${r.load.sent.toLocaleString("en")} sent (${r.load.due.toLocaleString("en")} due)${Object.keys(r.load.errors).length ? `, errors ${JSON.stringify(r.load.errors)}` : ", no error"};`,
    `${r.cancels.cancelledRunning} running tasks cancelled (DELETE to \`cancelled\` visible: p50 ${p(r.cancels.latenciesMs, 0.5).toFixed(0)} ms, max ${Math.max(0, ...r.cancels.latenciesMs).toFixed(0)} ms), ${r.cancels.finishedFirst} finished before the`,
    `cancel reached them, ${r.cancels.notSeenRunning} never seen running; ${r.sse.events.toLocaleString("en")} events over the SSE streams, ${r.sse.reopened} streams reopened;`,
    `everything drained ${(r.drainMs / 1000).toFixed(1)} s after the load stopped. Log lines at warn or above: ${r.warnings.map(warningText).join("; ")}.`,
    "",
    "![Soak test series](images/soak.png)",
    "",
    "The chart is drawn by uPlot (already the dashboard's chart library) from a page bundled by `Bun.build` from",
    "node_modules, in Debian's Chromium driven by playwright-core (already used by the browser tests), and",
    "screenshotted to `docs/images/soak.png`: no new dependency, nothing fetched. Shaded: the warm-up; dashed: each",
    "judged series' least-squares trend.",
    "",
    `Flatness: a least-squares line through the samples after the warm-up (the first ${r.warmupS >= 120 ? "2 minutes" : `${r.warmupS.toFixed(0)} s (a fifth of this short run)`}: the JIT, the pools`,
    "and the garbage collector's heap sizes settle there), its slope projected over 10 minutes; a series passes when that",
    "growth is at most the bound. A series that falls passes. Bounds per 10 minutes:",
    "",
    "- RSS: 16 MB, or 5% of the level if larger. Bun's heap grows in steps of a few MB as the garbage collector",
    `  sizes itself; 16 MB is two or three such steps. ${leakNote(r)} That is less than a task row, a request or a`,
    "  listener kept per task would cost.",
    "- PostgreSQL connections, per process: 2 (an idle connection reaped and reopened near an end of the window), or",
    "  any trend that stays within the sum of the process's pool bounds (bench/soak/series.ts `poolBounds`): a pool",
    "  opens connections lazily up to its bound, a step and not a leak; a leak (pools never closed) goes past it.",
    "- The soak prefix in Redis: 8 keys, and 256 KiB or 10%. agentq keeps a fixed set of keys (queues, the capacity",
    "  hash, a capped run-time list, counters, rate-limit windows); a key left per task would add thousands.",
    "- The backlog: one second of load (two for webhooks, whose retries wait a second and more), at least 10.",
    "  At half capacity it stays near empty; growth would mean the system falls behind.",
    "- Redis `used_memory` is shown, not judged: the server is shared with other engineers' tests.",
    "",
    ...seriesTable(r),
    "",
    `**${judgedOk ? "Every judged series is flat." : "Not every judged series is flat (FAIL above)."}** At the end, once drained:`,
    "",
    ...accountingLines(r.accounting, r),
    "",
  ].join("\n");
}
