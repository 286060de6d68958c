/**
 * The capacity of this setup, measured in the same run before the soak, on the same processes:
 * a burn-down of `tasks` tiny refreshes, each with a webhook to the receiver, sent over HTTP to
 * the API process as fast as `inFlight` requests at a time allow, while the supervisor process
 * drains them and the SSE clients follow. Capacity = tasks / (first request -> the last of every
 * task's end and every delivery's record, PostgreSQL's timestamps; one host, one clock). It
 * counts the whole path the soak loads: the API, the engine, the outbox and the event fan-out.
 * The supervisor stays up for the soak.
 */
import { bounded } from "../support.ts";
import { startSupervisor, type Service } from "./services.ts";
import { API_KEY, type World } from "./setup.ts";

export interface Capacity {
  tasks: number;
  /** Tasks per second, first request to last task end. */
  tasksPerSecond: number;
  /** Tasks per second, first request to last webhook recorded: the capacity the soak halves. */
  perSecond: number;
  spanMs: number;
  supervisor: Service;
  /** The burn-down tasks, as the API handed them out. */
  taskIds: Set<string>;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(200);
  }
}

export async function measureCapacity(
  world: World,
  opts: { base: string; tasks: number; inFlight: number; workers: number; concurrency: number; webhookUrl: string },
): Promise<Capacity> {
  const { sql } = world.runtime.database;
  const supervisor = await startSupervisor(world.env, opts.workers, opts.concurrency);
  const body = JSON.stringify({ priority: "medium", webhook_url: opts.webhookUrl });
  const headers = { "content-type": "application/json", "x-api-key": API_KEY };
  const firstRequest = Date.now();
  const taskIds = new Set<string>();
  try {
    await bounded(opts.tasks, opts.inFlight, async (i) => {
      const res = await fetch(`${opts.base}/agents/${world.tiny[i % world.tiny.length]}/coverage/refresh?force=true`, { method: "POST", headers, body });
      if (res.status !== 202) throw new Error(`burn-down refresh answered ${res.status}: ${await res.text()}`);
      taskIds.add(((await res.json()) as { task_id: string }).task_id);
    });
    await waitUntil(
      async () => {
        const [row] = await sql<{ open: number; outbox: number }[]>`
          select (select count(*) from background_tasks where status in ('pending', 'running'))::int as open,
                 (select count(*) from webhook_outbox where status = 'pending')::int as outbox`;
        return row!.open === 0 && row!.outbox === 0;
      },
      600_000,
      `the ${opts.tasks} burn-down tasks and their webhooks`,
    );
  } catch (error) {
    await supervisor.stop();
    throw error;
  }
  const [end] = await sql<{ tasks_end: number; all_end: number }[]>`
    select extract(epoch from max(t.completed_at)) * 1000 as tasks_end,
           extract(epoch from greatest(max(t.completed_at), max(o.delivered_at), max(o.updated_at))) * 1000 as all_end
    from background_tasks t left join webhook_outbox o on o.task_id = t.task_id`;
  const spanMs = Number(end!.all_end) - firstRequest;
  return {
    tasks: opts.tasks,
    tasksPerSecond: opts.tasks / ((Number(end!.tasks_end) - firstRequest) / 1000),
    perSecond: opts.tasks / (spanMs / 1000),
    spanMs,
    supervisor,
    taskIds,
  };
}
