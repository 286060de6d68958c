/**
 * Overview: queue depth by priority, running tasks, live workers, the last hour's throughput
 * and failure rate, and the age of the oldest pending task. Re-read on every task event
 * (at most once a second) and every 10 s (worker heartbeats send no task event).
 */
import { useEffect } from "preact/hooks";
import { api } from "../api.ts";
import { Card, Empty, ErrorNote, LiveIndicator, Stat, StatusBadge, PriorityBadge, ProgressBar, useLoad } from "../components.tsx";
import { formatAgo, formatDuration, formatPercent, shortId } from "../format.ts";
import { useNow, useTaskEvents, useThrottled } from "../live.ts";
import { Link } from "../router.tsx";
import { PRIORITIES, type TaskList, type TaskStats, type Workers } from "../types.ts";

export function Overview() {
  const stats = useLoad("stats", () => api.get<TaskStats>("/tasks/stats"));
  const recent = useLoad("recent", () => api.get<TaskList>("/tasks?limit=8"));
  const workers = useLoad("workers", () => api.get<Workers>("/workers"));
  const reload = useThrottled(() => {
    stats.reload();
    recent.reload();
    workers.reload();
  }, 1000);
  const live = useTaskEvents("/api/v1/events", {
    onEvent(event) {
      if (event.type === "progress")
        recent.set((list) => list && { ...list, tasks: list.tasks.map((t) => (t.task_id === event.task_id ? { ...t, progress_percentage: event.percent ?? t.progress_percentage } : t)) });
      else reload();
    },
    onOpen: reload,
    onResync: reload,
  });
  useEffect(() => {
    const timer = setInterval(() => {
      stats.reload();
      workers.reload();
    }, 10_000);
    return () => clearInterval(timer);
  }, []);
  const now = useNow(1000);

  return (
    <div class="page">
      <div class="page-title">
        <h1>Overview</h1>
        <LiveIndicator state={live} />
      </div>
      {stats.error ? <ErrorNote error={stats.error} /> : null}
      {stats.data && <Figures stats={stats.data} workers={workers.data} now={now} />}
      <div class="grid-2">
        {stats.data && <QueueDepth stats={stats.data} />}
        <Card title="Newest tasks" actions={<Link href="/dashboard/tasks">All tasks →</Link>}>
          {recent.error ? <ErrorNote error={recent.error} /> : null}
          {recent.data && recent.data.tasks.length === 0 && <Empty>No tasks yet.</Empty>}
          {recent.data && recent.data.tasks.length > 0 && (
            <table class="table compact">
              <tbody>
                {recent.data.tasks.map((t) => (
                  <tr key={t.task_id} data-task-id={t.task_id}>
                    <td>
                      <Link href={`/dashboard/tasks/${t.task_id}`} title={t.task_id} class="mono">
                        {shortId(t.task_id)}
                      </Link>
                    </td>
                    <td>
                      <StatusBadge status={t.status} />
                    </td>
                    <td>
                      <PriorityBadge priority={t.priority} />
                    </td>
                    <td class="cell-progress">
                      <ProgressBar value={t.progress_percentage} status={t.status} />
                    </td>
                    <td class="muted nowrap">{formatAgo(t.created_at, now)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Card>
      </div>
    </div>
  );
}

function Figures({ stats, workers, now }: { stats: TaskStats; workers: Workers | undefined; now: number }) {
  const { live, last_hour: hour, oldest_pending: oldest } = stats;
  const failed = hour.by_status.failed.total + hour.by_status.timeout.total;
  const failureRate = hour.finished === 0 ? null : (100 * failed) / hour.finished;
  // The age ticks on the page between reads: the server's age plus the time since it answered.
  const oldestAge = oldest ? oldest.age_seconds * 1000 + Math.max(0, now - Date.parse(stats.calculated_at)) : null;
  return (
    <div class="stats">
      <Stat id="pending" label="Pending" value={live.by_status.pending.total} hint={`${live.by_status.pending.high} high · ${live.by_status.pending.medium} medium · ${live.by_status.pending.low} low`} />
      <Stat id="running" label="Running" value={live.by_status.running.total} hint={workers ? `${workers.busy} of ${workers.task_slots} task slots busy` : undefined} />
      <Stat
        id="workers"
        label="Live workers"
        value={workers ? workers.task_slots : "–"}
        hint={workers ? `task slots on ${workers.supervisors.length} supervisor${workers.supervisors.length === 1 ? "" : "s"}` : "…"}
      />
      <Stat id="throughput" label="Throughput, last hour" value={hour.finished} hint={`${hour.by_status.completed.total} completed · ${(hour.finished / 60).toFixed(1)}/min`} />
      <Stat
        id="failure-rate"
        label="Failure rate, last hour"
        value={failureRate === null ? "–" : formatPercent(failureRate)}
        hint={`${hour.by_status.failed.total} failed · ${hour.by_status.timeout.total} timed out · ${hour.by_status.cancelled.total} cancelled`}
      />
      <Stat
        id="oldest-pending"
        label="Oldest pending"
        value={oldestAge === null ? "none" : formatDuration(oldestAge)}
        hint={oldest ? <Link href={`/dashboard/tasks/${oldest.task_id}`}>{shortId(oldest.task_id)}</Link> : "the queue is empty"}
      />
    </div>
  );
}

function QueueDepth({ stats }: { stats: TaskStats }) {
  const pending = stats.live.by_status.pending;
  const running = stats.live.by_status.running;
  const max = Math.max(1, ...PRIORITIES.map((p) => pending[p] + running[p]));
  return (
    <Card title="Queue depth by priority">
      <table class="table depth">
        <thead>
          <tr>
            <th>Priority</th>
            <th class="num">Pending</th>
            <th class="num">Running</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {PRIORITIES.map((p) => (
            <tr key={p} data-priority={p}>
              <td>
                <PriorityBadge priority={p} />
              </td>
              <td class="num" data-depth="pending">
                {pending[p]}
              </td>
              <td class="num" data-depth="running">
                {running[p]}
              </td>
              <td class="cell-bar">
                <div class="depth-bar">
                  <span class="depth-running" style={{ width: `${(100 * running[p]) / max}%` }} />
                  <span class="depth-pending" style={{ width: `${(100 * pending[p]) / max}%` }} />
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="legend">
        <span class="swatch depth-running" /> running <span class="swatch depth-pending" /> pending
      </p>
    </Card>
  );
}
