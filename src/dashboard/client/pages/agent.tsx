/**
 * One agent: its coverage figures, its coverage history as a chart (uPlot), its gaps, a
 * refresh with a priority choice, its refresh schedule, and its newest tasks (live: a
 * completed refresh redraws the chart).
 */
import { useEffect, useMemo, useState } from "preact/hooks";
import { api, readOnly, type ApiError } from "../api.ts";
import { HistoryChart } from "../chart.tsx";
import { Card, Empty, ErrorNote, FlashNote, LiveIndicator, PriorityBadge, ProgressBar, Stat, StatusBadge, useFlash, useLoad } from "../components.tsx";
import { formatAgo, formatTime, shortId } from "../format.ts";
import { useTaskEvents, useThrottled } from "../live.ts";
import { Link } from "../router.tsx";
import { PRIORITIES, type Agent, type Gaps, type History, type Priority, type Schedule, type Task, type TaskList, type TaxonomyNode } from "../types.ts";
import { CoverageBar } from "./agents.tsx";

const HISTORY_LIMIT = 1000;

export function AgentPage({ agentId }: { agentId: string }) {
  const base = `/agents/${encodeURIComponent(agentId)}`;
  const agent = useLoad(base, () => api.get<Agent>(base));
  const history = useLoad(`${base}/history`, () => api.get<History>(`${base}/coverage/history?limit=${HISTORY_LIMIT}`));
  const tasks = useLoad(`${base}/tasks`, () => api.get<TaskList>(`/tasks?agent_id=${encodeURIComponent(agentId)}&limit=8`));
  const reloadAll = useThrottled(() => {
    agent.reload();
    history.reload();
    tasks.reload();
  }, 1000);
  const reloadTasks = useThrottled(() => tasks.reload(), 500);
  const live = useTaskEvents(`/api/v1/events?agent_id=${encodeURIComponent(agentId)}`, {
    onEvent(event) {
      if (event.type === "progress") {
        tasks.set((l) => l && { ...l, tasks: l.tasks.map((t) => (t.task_id === event.task_id ? { ...t, status: event.status, progress_percentage: event.percent ?? t.progress_percentage } : t)) });
        return;
      }
      if (event.status === "completed") reloadAll();
      else reloadTasks();
    },
    onOpen: reloadAll,
    onResync: reloadAll,
  });

  if (agent.error && !agent.data) return <div class="page"><h1>Agent</h1><ErrorNote error={agent.error} /></div>;
  const a = agent.data;
  if (!a) return <div class="page"><p class="muted">Loading…</p></div>;
  const rows = history.data?.history ?? [];
  return (
    <div class="page" data-agent-id={a.agent_id}>
      <div class="page-title">
        <h1>{a.name}</h1>
        <LiveIndicator state={live} />
      </div>
      <p class="muted">
        <span class="mono">{a.agent_id}</span> · taxonomy {a.taxonomy_version} · level {a.level}
        {a.scope_description ? ` · ${a.scope_description}` : ""}
      </p>
      <div class="stats">
        <Stat id="coverage" label="Coverage" value={`${a.coverage_percent.toFixed(2)}%`} hint={<CoverageBar value={a.coverage_percent} />} />
        <Stat id="documents" label="Documents" value={a.total_documents} />
        <Stat id="chunks" label="Chunks" value={a.total_chunks} />
        <Stat id="measured" label="Last measured" value={a.last_coverage_update ? formatAgo(a.last_coverage_update) : "never"} hint={formatTime(a.last_coverage_update)} />
      </div>
      <Card
        title="Coverage history"
        actions={
          history.data && (
            <span class="muted">
              {history.data.total_entries > rows.length ? `newest ${rows.length} of ${history.data.total_entries} measurements` : `${rows.length} measurement${rows.length === 1 ? "" : "s"}`}
            </span>
          )
        }
      >
        {history.error ? <ErrorNote error={history.error} /> : null}
        {history.data && rows.length === 0 && <Empty>No measurement yet: refresh the coverage to draw the first point.</Empty>}
        {rows.length > 0 && <HistoryChart history={rows} />}
      </Card>
      <div class="grid-2">
        {!readOnly ? <RefreshCard agentId={a.agent_id} onQueued={() => tasks.reload()} /> : null}
        <ScheduleCard agentId={a.agent_id} />
      </div>
      <Card title="Newest tasks" actions={<Link href={`/dashboard/tasks?agent_id=${a.agent_id}`}>All of this agent's tasks →</Link>}>
        {tasks.error ? <ErrorNote error={tasks.error} /> : null}
        {tasks.data && tasks.data.tasks.length === 0 && <Empty>No task for this agent yet.</Empty>}
        {tasks.data && tasks.data.tasks.length > 0 && (
          <table class="table compact">
            <tbody>
              {tasks.data.tasks.map((t) => (
                <tr key={t.task_id} data-task-id={t.task_id}>
                  <td>
                    <Link href={`/dashboard/tasks/${t.task_id}`} class="mono" title={t.task_id}>
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
                  <td class="muted nowrap">{formatAgo(t.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
      <GapsCard agent={a} />
    </div>
  );
}

function RefreshCard({ agentId, onQueued }: { agentId: string; onQueued(): void }) {
  const [priority, setPriority] = useState<Priority>("medium");
  const [busy, setBusy] = useState(false);
  const [queued, setQueued] = useState<Task | null>(null);
  const [flash, showFlash] = useFlash();
  async function refresh() {
    setBusy(true);
    try {
      const task = await api.post<Task>(`/agents/${encodeURIComponent(agentId)}/coverage/refresh`, { priority });
      setQueued(task);
      onQueued();
    } catch (error) {
      showFlash("error", (error as ApiError).message);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Card title="Refresh coverage">
      <p class="muted">Measures the coverage in the background; a refresh already waiting for this agent is reused.</p>
      <div class="form-row">
        <label class="filter">
          Priority
          <select name="refresh-priority" value={priority} onChange={(e) => setPriority((e.currentTarget as HTMLSelectElement).value as Priority)}>
            {PRIORITIES.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <button type="button" class="button primary" data-action="refresh" disabled={busy} onClick={refresh}>
          Refresh now
        </button>
      </div>
      <FlashNote flash={flash} />
      {queued && (
        <p class="flash flash-ok" role="status">
          Queued <Link href={`/dashboard/tasks/${queued.task_id}`}>{shortId(queued.task_id)}</Link> ({queued.priority}
          {queued.queue_position ? `, position ${queued.queue_position}` : ""}).
        </p>
      )}
    </Card>
  );
}

const UNITS = [
  { name: "seconds", seconds: 1 },
  { name: "minutes", seconds: 60 },
  { name: "hours", seconds: 3600 },
  { name: "days", seconds: 86_400 },
] as const;

function splitInterval(seconds: number): { amount: number; unit: (typeof UNITS)[number]["name"] } {
  for (const u of [...UNITS].reverse()) if (seconds % u.seconds === 0) return { amount: seconds / u.seconds, unit: u.name };
  return { amount: seconds, unit: "seconds" };
}

const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

function ScheduleCard({ agentId }: { agentId: string }) {
  const path = `/agents/${encodeURIComponent(agentId)}/schedule`;
  const schedule = useLoad(path, () => api.get<Schedule>(path).catch((e: ApiError) => (e.status === 404 ? null : Promise.reject(e))));
  const [kind, setKind] = useState<"every" | "cron">("every");
  const [amount, setAmount] = useState(1);
  const [unit, setUnit] = useState<(typeof UNITS)[number]["name"]>("hours");
  const [cron, setCron] = useState("0 3 * * *");
  const [timezone, setTimezone] = useState(browserZone());
  const [priority, setPriority] = useState<Priority>("low");
  const [enabled, setEnabled] = useState(true);
  const [flash, showFlash] = useFlash();
  const [busy, setBusy] = useState(false);

  // The form starts from the stored schedule.
  useEffect(() => {
    const s = schedule.data;
    if (!s) return;
    if (s.cron !== null) {
      setKind("cron");
      setCron(s.cron);
    } else if (s.every_seconds !== null) {
      setKind("every");
      const split = splitInterval(s.every_seconds);
      setAmount(split.amount);
      setUnit(split.unit);
    }
    setTimezone(s.timezone);
    setPriority(s.priority);
    setEnabled(s.enabled);
  }, [schedule.data]);

  async function save(e: Event) {
    e.preventDefault();
    setBusy(true);
    try {
      const seconds = amount * UNITS.find((u) => u.name === unit)!.seconds;
      const body = kind === "cron" ? { cron, timezone, priority, enabled } : { every_seconds: seconds, timezone, priority, enabled };
      const saved = await api.put<Schedule>(path, body);
      schedule.set(() => saved);
      showFlash("ok", saved.next_run_at ? `Saved. Next run ${formatTime(saved.next_run_at)}.` : "Saved (paused).");
    } catch (error) {
      showFlash("error", (error as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    setBusy(true);
    try {
      await api.del(path);
      schedule.set(() => null);
      showFlash("ok", "Schedule removed.");
    } catch (error) {
      showFlash("error", (error as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  const s = schedule.data;
  const summary = s ? (
    <dl class="facts">
      <dt>Runs</dt>
      <dd data-schedule="runs">{s.cron !== null ? `cron ${s.cron} (${s.timezone})` : `every ${splitInterval(s.every_seconds ?? 0).amount} ${splitInterval(s.every_seconds ?? 0).unit}`}</dd>
      <dt>Priority</dt>
      <dd>{s.priority}</dd>
      <dt>Next run</dt>
      <dd data-schedule="next">{s.enabled ? formatTime(s.next_run_at) : "paused"}</dd>
      <dt>Last run</dt>
      <dd>{formatTime(s.last_run_at)}</dd>
    </dl>
  ) : (
    schedule.data === null && <Empty>No schedule: this agent is refreshed only on request.</Empty>
  );

  return (
    <Card title="Schedule">
      {schedule.error ? <ErrorNote error={schedule.error} /> : null}
      {summary}
      {!readOnly && schedule.data !== undefined && (
        <form class="schedule-form" onSubmit={save}>
          <div class="form-row">
            <label class="radio">
              <input type="radio" name="kind" value="every" checked={kind === "every"} onChange={() => setKind("every")} /> Every
            </label>
            <input
              type="number"
              name="every_amount"
              min={1}
              class="narrow"
              aria-label="Interval"
              value={amount}
              disabled={kind !== "every"}
              onInput={(e) => setAmount(Math.max(1, Math.floor(Number((e.currentTarget as HTMLInputElement).value) || 1)))}
            />
            <select name="every_unit" aria-label="Interval unit" value={unit} disabled={kind !== "every"} onChange={(e) => setUnit((e.currentTarget as HTMLSelectElement).value as typeof unit)}>
              {UNITS.map((u) => (
                <option key={u.name} value={u.name}>
                  {u.name}
                </option>
              ))}
            </select>
          </div>
          <div class="form-row">
            <label class="radio">
              <input type="radio" name="kind" value="cron" checked={kind === "cron"} onChange={() => setKind("cron")} /> Cron
            </label>
            <input type="text" name="cron" class="mono" aria-label="Cron expression" value={cron} disabled={kind !== "cron"} onInput={(e) => setCron((e.currentTarget as HTMLInputElement).value)} />
            <input type="text" name="timezone" aria-label="Time zone" value={timezone} disabled={kind !== "cron"} onInput={(e) => setTimezone((e.currentTarget as HTMLInputElement).value)} />
          </div>
          <div class="form-row">
            <label class="filter">
              Priority
              <select name="schedule-priority" value={priority} onChange={(e) => setPriority((e.currentTarget as HTMLSelectElement).value as Priority)}>
                {PRIORITIES.map((p) => (
                  <option key={p} value={p}>
                    {p}
                  </option>
                ))}
              </select>
            </label>
            <label class="checkbox">
              <input type="checkbox" name="enabled" checked={enabled} onChange={(e) => setEnabled((e.currentTarget as HTMLInputElement).checked)} /> Enabled
            </label>
          </div>
          <div class="form-row">
            <button type="submit" class="button primary" data-action="save-schedule" disabled={busy}>
              {s ? "Save schedule" : "Create schedule"}
            </button>
            {s && (
              <button type="button" class="button danger" data-action="delete-schedule" disabled={busy} onClick={remove}>
                Remove
              </button>
            )}
          </div>
        </form>
      )}
      <FlashNote flash={flash} />
    </Card>
  );
}

const THRESHOLDS = [0.25, 0.5, 0.75, 1];

function GapsCard({ agent }: { agent: Agent }) {
  const [threshold, setThreshold] = useState(0.5);
  const path = `/agents/${encodeURIComponent(agent.agent_id)}/gaps?threshold=${threshold}`;
  const gaps = useLoad(path, () => api.get<Gaps>(path));
  const nodes = useLoad(`nodes:${agent.taxonomy_version}`, () =>
    api.get<{ nodes: TaxonomyNode[] }>(`/taxonomies/${encodeURIComponent(agent.taxonomy_version)}/nodes`).catch(() => ({ nodes: [] })),
  );
  const labels = useMemo(() => new Map((nodes.data?.nodes ?? []).map((n) => [n.node_id, n.label])), [nodes.data]);
  const list = gaps.data?.gaps ?? [];
  return (
    <Card
      title="Gaps"
      actions={
        <label class="filter inline">
          below
          <select name="threshold" value={String(threshold)} onChange={(e) => setThreshold(Number((e.currentTarget as HTMLSelectElement).value))}>
            {THRESHOLDS.map((t) => (
              <option key={t} value={String(t)}>
                {t * 100}% of target
              </option>
            ))}
          </select>
        </label>
      }
    >
      {gaps.error ? <ErrorNote error={gaps.error} /> : null}
      {gaps.data && list.length === 0 && <Empty>No node is below {threshold * 100}% of its target.</Empty>}
      {list.length > 0 && (
        <table class="table gaps-table">
          <thead>
            <tr>
              <th>Node</th>
              <th class="num">Coverage</th>
              <th class="num">Missing documents</th>
              <th>Recommendation</th>
            </tr>
          </thead>
          <tbody>
            {list.map((g) => (
              <tr key={g.node_id} data-node-id={g.node_id}>
                <td>
                  {labels.get(g.node_id) ?? shortId(g.node_id)}
                  <div class="muted mono small">{shortId(g.node_id)}</div>
                </td>
                <td class="num">
                  {g.current_coverage.toFixed(1)}% <span class="muted">/ {g.target_coverage}%</span>
                </td>
                <td class="num">{g.missing_docs}</td>
                <td class="small">{g.recommendation}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}
