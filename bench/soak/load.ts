/**
 * The soak's steady load over HTTP, against the API process:
 *
 *   - refresh clients: `clients` loops POSTing /agents/{id}/coverage/refresh?force=true with a
 *     webhook_url, together at `rate` requests per second. Open loop: each request has its due
 *     time (start + k / per-client rate); a client that falls behind sends at once, one request
 *     in flight each, so a slow API shows as a shortfall (sent < due), never as a burst;
 *   - a canceller: every `everyMs`, a refresh of the heavy agent (a few hundred ms inside
 *     PostgreSQL), watched until it is running, then DELETE /tasks/{id}, then watched until it
 *     is terminal.
 *
 * Every task id the API handed out is kept, for the accounting at the end.
 */
import { API_KEY } from "./setup.ts";

const HEADERS = { "content-type": "application/json", "x-api-key": API_KEY };

export interface RefreshLoad {
  due(): number;
  sent: number;
  accepted: number;
  /** HTTP status (or "network") -> count, for answers other than 202. */
  errors: Map<string, number>;
  taskIds: Set<string>;
  stop(): Promise<void>;
}

export function startRefreshLoad(options: { base: string; agents: string[]; rate: number; clients: number; webhookUrl: string }): RefreshLoad {
  const perClient = options.rate / options.clients;
  const start = performance.now();
  let stopping = false;
  const load: RefreshLoad = {
    due: () => Math.floor(((performance.now() - start) / 1000) * options.rate),
    sent: 0,
    accepted: 0,
    errors: new Map(),
    taskIds: new Set(),
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
    },
  };
  const body = JSON.stringify({ priority: "medium", webhook_url: options.webhookUrl });
  const count = (key: string) => load.errors.set(key, (load.errors.get(key) ?? 0) + 1);
  const client = async (c: number) => {
    for (let k = 0; !stopping; k++) {
      const dueAt = start + (k / perClient) * 1000 + (c / options.rate) * 1000;
      const wait = dueAt - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      if (stopping) break;
      const agent = options.agents[(k * options.clients + c) % options.agents.length]!;
      load.sent++;
      try {
        const res = await fetch(`${options.base}/agents/${agent}/coverage/refresh?force=true`, { method: "POST", headers: HEADERS, body });
        const json = (await res.json()) as { task_id?: string };
        if (res.status === 202 && json.task_id) {
          load.accepted++;
          load.taskIds.add(json.task_id);
        } else count(String(res.status));
      } catch {
        count("network");
      }
    }
  };
  const loops = Array.from({ length: options.clients }, (_, c) => client(c));
  return load;
}

export interface CancelStats {
  /** Cancels whose task was seen running and then ended cancelled. */
  cancelledRunning: number;
  /** The task ended by itself before the DELETE reached it (seen running, ended completed). */
  finishedFirst: number;
  /** The task was never seen running before it ended (too quick for the poll). */
  notSeenRunning: number;
  errors: number;
  /** DELETE -> terminal status visible, per cancel that took effect. */
  latenciesMs: number[];
  taskIds: Set<string>;
  stop(): Promise<void>;
}

type TaskStatus = "pending" | "running" | "completed" | "failed" | "timeout" | "cancelled";
const TERMINAL = new Set<TaskStatus>(["completed", "failed", "timeout", "cancelled"]);

async function statusOf(base: string, taskId: string): Promise<TaskStatus> {
  const res = await fetch(`${base}/tasks/${taskId}`, { headers: HEADERS });
  return ((await res.json()) as { status: TaskStatus }).status;
}

async function pollUntil(base: string, taskId: string, done: (s: TaskStatus) => boolean, timeoutMs: number): Promise<TaskStatus> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const status = await statusOf(base, taskId);
    if (done(status) || performance.now() > deadline) return status;
    await Bun.sleep(5);
  }
}

export function startCanceller(options: { base: string; heavyAgent: string; everyMs: number; webhookUrl: string }): CancelStats {
  let stopping = false;
  let wake: (() => void) | null = null;
  const stats: CancelStats = {
    cancelledRunning: 0,
    finishedFirst: 0,
    notSeenRunning: 0,
    errors: 0,
    latenciesMs: [],
    taskIds: new Set(),
    stop: async () => {
      stopping = true;
      wake?.();
      await loop;
    },
  };
  const once = async () => {
    const res = await fetch(`${options.base}/agents/${options.heavyAgent}/coverage/refresh?force=true`, {
      method: "POST",
      headers: HEADERS,
      body: JSON.stringify({ priority: "high", webhook_url: options.webhookUrl }),
    });
    const { task_id: taskId } = (await res.json()) as { task_id: string };
    stats.taskIds.add(taskId);
    const seen = await pollUntil(options.base, taskId, (s) => s !== "pending", 30_000);
    if (seen !== "running") {
      stats.notSeenRunning++;
      await pollUntil(options.base, taskId, (s) => TERMINAL.has(s), 60_000);
      return;
    }
    const t0 = performance.now();
    const del = await fetch(`${options.base}/tasks/${taskId}`, { method: "DELETE", headers: HEADERS });
    if (del.status !== 204) throw new Error(`DELETE answered ${del.status}`);
    const end = await pollUntil(options.base, taskId, (s) => TERMINAL.has(s), 60_000);
    if (end === "cancelled") {
      stats.cancelledRunning++;
      stats.latenciesMs.push(performance.now() - t0);
    } else if (end === "completed") stats.finishedFirst++;
    else throw new Error(`cancelled task ended ${end}`);
  };
  const loop = (async () => {
    while (!stopping) {
      const next = performance.now() + options.everyMs;
      try {
        await once();
      } catch (error) {
        stats.errors++;
        console.error(`cancel round failed: ${String(error)}`);
      }
      const wait = next - performance.now();
      if (wait > 0 && !stopping) await new Promise<void>((resolve) => ((wake = resolve), setTimeout(resolve, wait)));
    }
  })();
  return stats;
}
