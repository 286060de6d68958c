/**
 * One task: its timeline (created, each attempt's start and end, and why an earlier attempt ended:
 * ../timeline.ts), a progress bar that moves with the task's events (GET /api/v1/tasks/{id}/events),
 * its result or error, and its webhook delivery with every attempt and a redeliver button. Cancel
 * and retry act on it.
 */
import { useEffect, useState } from "preact/hooks";
import { api, readOnly, type ApiError } from "../api.ts";
import { Card, Empty, ErrorNote, FlashNote, LiveIndicator, PriorityBadge, ProgressBar, StatusBadge, useFlash, useLoad } from "../components.tsx";
import { formatDuration, formatTime, shortId } from "../format.ts";
import { timeline } from "../timeline.ts";
import { useNow, useTaskEvents } from "../live.ts";
import { Link, navigate } from "../router.tsx";
import { CANCELLABLE, RETRYABLE, TERMINAL, type Agent, type Task, type TaskEvent, type WebhookDelivery } from "../types.ts";

export function TaskPage({ taskId }: { taskId: string }) {
  const path = `/tasks/${encodeURIComponent(taskId)}`;
  const task = useLoad(path, () => api.get<Task>(path));
  const agentId = task.data?.agent_id;
  const agent = useLoad(`agent:${agentId ?? ""}`, () => (agentId ? api.get<Agent>(`/agents/${agentId}`).catch(() => null) : Promise.resolve(null)));
  const [seen, setSeen] = useState<TaskEvent[]>([]);
  const [flash, showFlash] = useFlash();
  const [busy, setBusy] = useState(false);
  const now = useNow(1000);
  const current = task.data;
  const ended = current ? TERMINAL.has(current.status) : false;

  // The stream starts with the task itself and ends after its terminal status.
  // No stream for a task that could not be read (unknown, malformed id): EventSource would retry forever.
  const live = useTaskEvents(task.error && !task.data ? null : `/api/v1/tasks/${encodeURIComponent(taskId)}/events`, {
    onTask(t) {
      task.set(() => t);
      return TERMINAL.has(t.status) ? "close" : undefined;
    },
    onEvent(event) {
      if (event.task_id !== taskId) return;
      setSeen((old) => [...old, event]);
      task.set((t) => t && { ...t, status: event.status, attempt: event.attempt, progress_percentage: event.percent ?? t.progress_percentage });
      if (event.type === "progress") return;
      // A status change: the row has more to say (times, result, error, the webhook).
      task.reload();
      return TERMINAL.has(event.status) ? "close" : undefined;
    },
  });

  async function act(kind: "cancel" | "retry") {
    setBusy(true);
    try {
      if (kind === "cancel") {
        await api.del(path);
        showFlash("ok", "Cancelled.");
        task.reload();
      } else {
        const next = await api.post<Task>(`${path}/retry`);
        navigate(`/dashboard/tasks/${next.task_id}`);
      }
    } catch (error) {
      showFlash("error", (error as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  if (task.error && !current) return <div class="page"><h1>Task</h1><ErrorNote error={task.error} /></div>;
  if (!current) return <div class="page"><p class="muted">Loading…</p></div>;
  return (
    <div class="page" data-task-id={current.task_id}>
      <div class="page-title">
        <h1 class="mono" title={current.task_id}>
          {current.task_id}
        </h1>
        <LiveIndicator state={live} />
      </div>
      <div class="task-head">
        <StatusBadge status={current.status} />
        <PriorityBadge priority={current.priority} />
        <span>
          agent <Link href={`/dashboard/agents/${current.agent_id}`}>{agent.data?.name ?? shortId(current.agent_id)}</Link>
        </span>
        {current.retry_of && (
          <span>
            retry of <Link href={`/dashboard/tasks/${current.retry_of}`}>{shortId(current.retry_of)}</Link>
          </span>
        )}
        {current.schedule_id && <span class="muted">scheduled</span>}
        {!readOnly && (
          <span class="task-actions">
            {CANCELLABLE.has(current.status) && (
              <button type="button" class="button danger" data-action="cancel" disabled={busy} onClick={() => act("cancel")}>
                Cancel task
              </button>
            )}
            {RETRYABLE.has(current.status) && (
              <button type="button" class="button" data-action="retry" disabled={busy} onClick={() => act("retry")}>
                Retry task
              </button>
            )}
          </span>
        )}
      </div>
      <FlashNote flash={flash} />
      <div class="grid-2">
        <Card title="Progress">
          <ProgressBar value={current.progress_percentage} status={current.status} />
          <dl class="facts">
            {current.status === "pending" && (
              <>
                <dt>Queue position</dt>
                <dd>{current.queue_position ?? "being picked up"}</dd>
              </>
            )}
            {!ended && current.estimated_completion_at && (
              <>
                <dt>Estimated completion</dt>
                <dd>{formatTime(current.estimated_completion_at)}</dd>
              </>
            )}
            <dt>Attempts</dt>
            <dd>
              {current.attempt} of at most {current.max_attempts}
            </dd>
            <dt>Time limit</dt>
            <dd>{formatDuration(current.timeout_ms)}</dd>
            {current.status === "running" && current.started_at && (
              <>
                <dt>Running for</dt>
                <dd>{formatDuration(now - Date.parse(current.started_at))}</dd>
              </>
            )}
            {current.lease_owner && (
              <>
                <dt>Worker</dt>
                <dd class="mono">{current.lease_owner}</dd>
              </>
            )}
          </dl>
        </Card>
        <Card title="Timeline">
          <ol class="timeline">
            {timeline(current, seen).map((e, i) => (
              <li key={i} class={`timeline-${e.kind}`}>
                <span class="timeline-at">{e.at ? formatTime(e.at) : "–"}</span>
                <span class="timeline-label">{e.label}</span>
                {e.detail && <span class="timeline-detail">{e.detail}</span>}
              </li>
            ))}
          </ol>
        </Card>
      </div>
      {current.error && (
        <Card title="Error" class="card-error">
          <pre class="error-text">{current.error}</pre>
        </Card>
      )}
      {current.status === "completed" && <ResultCard result={current.result} />}
      <WebhookCard task={current} />
    </div>
  );
}

function ResultCard({ result }: { result: unknown }) {
  const r = (result ?? {}) as { overall_coverage?: number; total_documents?: number; total_chunks?: number; version?: string };
  return (
    <Card title="Result">
      <div class="stats stats-small">
        {r.overall_coverage !== undefined && <div class="stat"><div class="stat-label">Coverage</div><div class="stat-value">{r.overall_coverage}%</div></div>}
        {r.total_documents !== undefined && <div class="stat"><div class="stat-label">Documents</div><div class="stat-value">{r.total_documents}</div></div>}
        {r.total_chunks !== undefined && <div class="stat"><div class="stat-label">Chunks</div><div class="stat-value">{r.total_chunks}</div></div>}
        {r.version !== undefined && <div class="stat"><div class="stat-label">Taxonomy version</div><div class="stat-value">{r.version}</div></div>}
      </div>
      <details>
        <summary>Full result (JSON)</summary>
        <pre class="json">{JSON.stringify(result, null, 2)}</pre>
      </details>
    </Card>
  );
}

function WebhookCard({ task }: { task: Task }) {
  const path = `/tasks/${encodeURIComponent(task.task_id)}/webhook`;
  const ended = TERMINAL.has(task.status);
  const delivery = useLoad(`${path}:${task.status}`, () => (task.webhook_url && ended ? api.get<WebhookDelivery>(path) : Promise.resolve(null)));
  const [flash, showFlash] = useFlash();
  const [busy, setBusy] = useState(false);

  async function redeliver() {
    setBusy(true);
    try {
      const d = await api.post<WebhookDelivery>(`${path}/redeliver`);
      delivery.set(() => d);
      showFlash("ok", "Redelivery started.");
    } catch (error) {
      showFlash("error", (error as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  const d = delivery.data;
  // A delivery in progress sends no event: it is re-read every second until it is delivered or dead.
  useEffect(() => {
    if (d?.status !== "pending") return;
    const timer = setTimeout(() => delivery.reload(), 1000);
    return () => clearTimeout(timer);
  }, [d]);
  return (
    <Card
      title="Webhook"
      actions={
        !readOnly &&
        d && (
          <button type="button" class="button" data-action="redeliver" disabled={busy || d.status === "pending"} onClick={redeliver}>
            Redeliver
          </button>
        )
      }
    >
      <FlashNote flash={flash} />
      {!task.webhook_url && <Empty>This task has no webhook.</Empty>}
      {task.webhook_url && !ended && <Empty>Sent to {task.webhook_url} when the task ends.</Empty>}
      {delivery.error ? <ErrorNote error={delivery.error} /> : null}
      {d && (
        <>
          <dl class="facts">
            <dt>URL</dt>
            <dd class="mono">{d.url}</dd>
            <dt>Delivery</dt>
            <dd>
              <span class={`badge delivery-${d.status}`}>{d.status}</span> after {d.attempts} attempt{d.attempts === 1 ? "" : "s"}
              {d.next_attempt_at && d.status === "pending" ? `, next at ${formatTime(d.next_attempt_at)}` : ""}
            </dd>
            <dt>webhook-id</dt>
            <dd class="mono">{d.webhook_id}</dd>
          </dl>
          {d.attempt_log.length > 0 && (
            <table class="table compact">
              <thead>
                <tr>
                  <th class="num">#</th>
                  <th>At</th>
                  <th class="num">Status</th>
                  <th class="num">Took</th>
                  <th>Error</th>
                </tr>
              </thead>
              <tbody>
                {d.attempt_log.map((a) => (
                  <tr key={a.attempt}>
                    <td class="num">{a.attempt}</td>
                    <td class="nowrap">{formatTime(a.attempted_at)}</td>
                    <td class="num">{a.status_code ?? "–"}</td>
                    <td class="num">{a.duration_ms === null ? "–" : `${a.duration_ms} ms`}</td>
                    <td class="ellipsis">{a.error ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </Card>
  );
}
