/**
 * The task list: filters (status, priority, agent) and pages kept in the URL, newest first with
 * the API's cursor; rows follow their tasks live (GET /api/v1/events with the same agent and
 * status filters), and new tasks appear on the first page. Selected tasks can be cancelled or
 * retried together.
 */
import { useMemo, useState } from "preact/hooks";
import { api, query, readOnly, type ApiError } from "../api.ts";
import { Card, Empty, ErrorNote, FlashNote, LiveIndicator, PriorityBadge, ProgressBar, StatusBadge, useFlash, useLoad } from "../components.tsx";
import { formatAgo, formatDuration, shortId } from "../format.ts";
import { useNow, useTaskEvents, useThrottled } from "../live.ts";
import { Link, navigate, useLocation } from "../router.tsx";
import { CANCELLABLE, PRIORITIES, RETRYABLE, STATUSES, type Agent, type AgentList, type Priority, type TaskList, type TaskStatus, type TaskSummary } from "../types.ts";

const PAGE_SIZES = [25, 50, 100];

/** Runs `fn` over `items`, `width` at a time; returns what each gave or threw. */
export async function eachLimited<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>) {
  const out: ({ ok: true; value: R } | { ok: false; error: unknown })[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { ok: true, value: await fn(items[i]!) };
      } catch (error) {
        out[i] = { ok: false, error };
      }
    }
  });
  await Promise.all(lanes);
  return out;
}

/** Agent names for the rows (one request for the first 100 agents; others show their id). */
export function useAgentNames(): Map<string, string> {
  const agents = useLoad("agent-names", () => api.get<AgentList>("/agents?max_results=100"));
  return useMemo(() => new Map((agents.data?.agents ?? []).map((a: Agent) => [a.agent_id, a.name])), [agents.data]);
}

export function TasksPage() {
  const { params } = useLocation();
  const statuses = params.getAll("status").filter((s): s is TaskStatus => (STATUSES as readonly string[]).includes(s));
  const priority = (PRIORITIES as readonly string[]).includes(params.get("priority") ?? "") ? (params.get("priority") as Priority) : undefined;
  const agentId = params.get("agent_id") ?? undefined;
  const limit = PAGE_SIZES.includes(Number(params.get("limit"))) ? Number(params.get("limit")) : 25;
  const cursor = params.get("cursor") ?? undefined;
  /** Cursors of the pages before this one, so Previous works (the API pages forward only). */
  const back = params.getAll("back");

  const filters = { status: statuses, priority, agent_id: agentId, limit };
  const listPath = `/tasks${query({ ...filters, cursor })}`;
  const list = useLoad(listPath, () => api.get<TaskList>(listPath));
  const names = useAgentNames();
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const [flash, showFlash] = useFlash();
  const now = useNow(5000);
  const firstPage = cursor === undefined;

  const setParams = (next: Record<string, string | number | readonly string[] | undefined>) => {
    setSelected(new Set());
    navigate(`/dashboard/tasks${query({ ...filters, ...next })}`);
  };

  const refetch = useThrottled(() => list.reload(), 750);
  const eventsUrl = `/api/v1/events${query({ agent_id: agentId, status: statuses.length > 0 ? statuses.join(",") : undefined })}`;
  const live = useTaskEvents(eventsUrl, {
    onEvent(event) {
      const known = list.data?.tasks.some((t) => t.task_id === event.task_id);
      if (!known) {
        // A task this page does not show: on the first page it may belong at the top.
        if (firstPage && (priority === undefined || event.status === "pending")) refetch();
        return;
      }
      list.set(
        (old) =>
          old && {
            ...old,
            tasks: old.tasks.map((t) =>
              t.task_id !== event.task_id
                ? t
                : {
                    ...t,
                    status: event.status,
                    attempt: event.attempt,
                    progress_percentage: event.percent ?? (event.status === "completed" ? 100 : t.progress_percentage),
                    ...(event.status === "running" && event.type === "status" ? { started_at: event.at } : {}),
                    ...(event.type === "status" && event.status !== "running" && event.status !== "pending" ? { completed_at: event.at } : {}),
                  },
            ),
          },
      );
      if (event.type === "status" && event.status !== "running") refetch();
    },
    onOpen: () => list.reload(),
    onResync: () => list.reload(),
  });

  const tasks = list.data?.tasks ?? [];
  const chosen = tasks.filter((t) => selected.has(t.task_id));
  const cancellable = chosen.filter((t) => CANCELLABLE.has(t.status));
  const retryable = chosen.filter((t) => RETRYABLE.has(t.status));
  const allSelected = tasks.length > 0 && tasks.every((t) => selected.has(t.task_id));

  const toggle = (id: string) =>
    setSelected((old) => {
      const next = new Set(old);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  async function bulk(kind: "cancel" | "retry") {
    const targets = kind === "cancel" ? cancellable : retryable;
    setBusy(true);
    const results = await eachLimited(targets, 8, async (t): Promise<unknown> =>
      kind === "cancel" ? api.del(`/tasks/${t.task_id}`) : api.post<TaskSummary>(`/tasks/${t.task_id}/retry`),
    );
    setBusy(false);
    const failed = results.flatMap((r, i) => (r.ok ? [] : [`${shortId(targets[i]!.task_id)}: ${(r.error as ApiError).message}`]));
    const done = results.length - failed.length;
    const verb = kind === "cancel" ? "Cancelled" : "Retried";
    if (failed.length === 0) showFlash("ok", `${verb} ${done} task${done === 1 ? "" : "s"}.`);
    else showFlash("error", `${verb} ${done} of ${results.length}. ${failed.join("; ")}`);
    setSelected(new Set());
    list.reload();
  }

  return (
    <div class="page">
      <div class="page-title">
        <h1>Tasks</h1>
        <LiveIndicator state={live} />
      </div>
      <Filters statuses={statuses} priority={priority} agentId={agentId} limit={limit} names={names} onChange={setParams} />
      <Card
        actions={
          !readOnly && (
            <div class="bulk-actions">
              <span class="muted">{chosen.length} selected</span>
              <button type="button" class="button danger" data-action="cancel-selected" disabled={busy || cancellable.length === 0} onClick={() => bulk("cancel")}>
                Cancel {cancellable.length || ""}
              </button>
              <button type="button" class="button" data-action="retry-selected" disabled={busy || retryable.length === 0} onClick={() => bulk("retry")}>
                Retry {retryable.length || ""}
              </button>
            </div>
          )
        }
        title={firstPage ? "Newest first" : "Older tasks"}
      >
        <FlashNote flash={flash} />
        {list.error ? <ErrorNote error={list.error} /> : null}
        {list.data && tasks.length === 0 && <Empty>No task matches these filters.</Empty>}
        {tasks.length > 0 && (
          <table class="table tasks-table">
            <thead>
              <tr>
                {!readOnly && (
                  <th class="cell-check">
                    <input
                      type="checkbox"
                      aria-label="Select every task on this page"
                      checked={allSelected}
                      onChange={() => setSelected(allSelected ? new Set() : new Set(tasks.map((t) => t.task_id)))}
                    />
                  </th>
                )}
                <th>Task</th>
                <th>Agent</th>
                <th>Status</th>
                <th>Priority</th>
                <th class="cell-progress">Progress</th>
                <th class="num">Attempt</th>
                <th>Created</th>
                <th class="num">Run time</th>
              </tr>
            </thead>
            <tbody>
              {tasks.map((t) => (
                <tr key={t.task_id} data-task-id={t.task_id} data-status={t.status} class={selected.has(t.task_id) ? "selected" : ""}>
                  {!readOnly && (
                    <td class="cell-check">
                      <input type="checkbox" aria-label={`Select ${t.task_id}`} checked={selected.has(t.task_id)} onChange={() => toggle(t.task_id)} />
                    </td>
                  )}
                  <td>
                    <Link href={`/dashboard/tasks/${t.task_id}`} class="mono" title={t.task_id}>
                      {shortId(t.task_id)}
                    </Link>
                  </td>
                  <td class="ellipsis">
                    <Link href={`/dashboard/agents/${t.agent_id}`} title={t.agent_id}>
                      {names.get(t.agent_id) ?? shortId(t.agent_id)}
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
                  <td class="num">
                    {t.attempt}/{t.max_attempts}
                  </td>
                  <td class="nowrap muted" title={t.created_at}>
                    {formatAgo(t.created_at, now)}
                  </td>
                  <td class="num nowrap">{t.started_at ? formatDuration((t.completed_at ? Date.parse(t.completed_at) : now) - Date.parse(t.started_at)) : "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <div class="pager">
          <button
            type="button"
            class="button"
            disabled={firstPage}
            onClick={() => setParams({ cursor: back.at(-1) || undefined, back: back.slice(0, -1) })}
          >
            ← Newer
          </button>
          <button
            type="button"
            class="button"
            disabled={!list.data?.next_cursor}
            onClick={() => setParams({ cursor: list.data!.next_cursor!, back: [...back, cursor ?? ""] })}
          >
            Older →
          </button>
        </div>
      </Card>
    </div>
  );
}

interface FiltersProps {
  statuses: TaskStatus[];
  priority: Priority | undefined;
  agentId: string | undefined;
  limit: number;
  names: Map<string, string>;
  onChange(next: Record<string, string | number | readonly string[] | undefined>): void;
}

function Filters({ statuses, priority, agentId, limit, names, onChange }: FiltersProps) {
  const toggleStatus = (s: TaskStatus) => onChange({ status: statuses.includes(s) ? statuses.filter((x) => x !== s) : [...statuses, s], cursor: undefined, back: undefined });
  return (
    <div class="filters">
      <div class="filter-group" role="group" aria-label="Status">
        {STATUSES.map((s) => (
          <label key={s} class={`chip ${statuses.includes(s) ? "chip-on" : ""}`}>
            <input type="checkbox" name="status" value={s} checked={statuses.includes(s)} onChange={() => toggleStatus(s)} />
            {s}
          </label>
        ))}
      </div>
      <label class="filter">
        Priority
        <select name="priority" value={priority ?? ""} onChange={(e) => onChange({ priority: (e.currentTarget as HTMLSelectElement).value || undefined, cursor: undefined, back: undefined })}>
          <option value="">any</option>
          {PRIORITIES.map((p) => (
            <option key={p} value={p}>
              {p}
            </option>
          ))}
        </select>
      </label>
      <label class="filter">
        Agent
        <select name="agent_id" value={agentId ?? ""} onChange={(e) => onChange({ agent_id: (e.currentTarget as HTMLSelectElement).value || undefined, cursor: undefined, back: undefined })}>
          <option value="">any</option>
          {agentId && !names.has(agentId) && <option value={agentId}>{shortId(agentId)}</option>}
          {[...names].map(([id, name]) => (
            <option key={id} value={id}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <label class="filter">
        Per page
        <select name="limit" value={String(limit)} onChange={(e) => onChange({ limit: Number((e.currentTarget as HTMLSelectElement).value), cursor: undefined, back: undefined })}>
          {PAGE_SIZES.map((n) => (
            <option key={n} value={String(n)}>
              {n}
            </option>
          ))}
        </select>
      </label>
      {(statuses.length > 0 || priority || agentId) && (
        <button type="button" class="button link" onClick={() => onChange({ status: undefined, priority: undefined, agent_id: undefined, cursor: undefined, back: undefined })}>
          Clear filters
        </button>
      )}
    </div>
  );
}
