/** The agents with their coverage; a name search, pages, and a refresh of the selected agents. */
import { useState } from "preact/hooks";
import { api, query, readOnly, type ApiError } from "../api.ts";
import { Card, Empty, ErrorNote, FlashNote, useFlash, useLoad } from "../components.tsx";
import { formatAgo, shortId } from "../format.ts";
import { Link, navigate, useLocation } from "../router.tsx";
import { PRIORITIES, type AgentList, type Priority } from "../types.ts";

const PAGE = 25;

export function CoverageBar({ value }: { value: number }) {
  const level = value >= 80 ? "good" : value >= 50 ? "fair" : "poor";
  return (
    <div class={`coverage coverage-${level}`} title={`${value}%`}>
      <div class="coverage-fill" style={{ width: `${Math.max(0, Math.min(100, value))}%` }} />
      <span class="coverage-label">{value.toFixed(1)}%</span>
    </div>
  );
}

export function AgentsPage() {
  const { params } = useLocation();
  const q = params.get("q") ?? "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const path = `/agents${query({ q: q || undefined, max_results: PAGE, offset: offset || undefined })}`;
  const agents = useLoad(path, () => api.get<AgentList>(path));
  const [search, setSearch] = useState(q);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [priority, setPriority] = useState<Priority>("medium");
  const [flash, showFlash] = useFlash();
  const [busy, setBusy] = useState(false);
  const list = agents.data?.agents ?? [];
  const total = agents.data?.total ?? 0;

  const go = (next: { q?: string; offset?: number }) => {
    setSelected(new Set());
    navigate(`/dashboard/agents${query({ q: (next.q ?? q) || undefined, offset: next.offset || undefined })}`);
  };

  async function refreshSelected() {
    setBusy(true);
    try {
      const out = await api.post<{ created: number; tasks: unknown[] }>("/coverage/refresh", { agent_ids: [...selected], priority });
      showFlash("ok", `Queued ${out.created} refresh${out.created === 1 ? "" : "es"} (${out.tasks.length - out.created} already pending).`);
      setSelected(new Set());
    } catch (error) {
      showFlash("error", (error as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  const toggle = (id: string) =>
    setSelected((old) => {
      const next = new Set(old);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  return (
    <div class="page">
      <div class="page-title">
        <h1>Agents</h1>
        <span class="muted">{total} in all</span>
      </div>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          go({ q: search, offset: 0 });
        }}
      >
        <label class="filter grow">
          Name
          <input type="search" name="q" placeholder="part of a name" value={search} onInput={(e) => setSearch((e.currentTarget as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="button">
          Search
        </button>
      </form>
      <Card
        actions={
          !readOnly && (
            <div class="bulk-actions">
              <span class="muted">{selected.size} selected</span>
              <select aria-label="Priority of the refreshes" value={priority} onChange={(e) => setPriority((e.currentTarget as HTMLSelectElement).value as Priority)}>
                {PRIORITIES.map((p) => (
                  <option key={p} value={p}>
                    {p}
                  </option>
                ))}
              </select>
              <button type="button" class="button" data-action="refresh-selected" disabled={busy || selected.size === 0} onClick={refreshSelected}>
                Refresh coverage
              </button>
            </div>
          )
        }
      >
        <FlashNote flash={flash} />
        {agents.error ? <ErrorNote error={agents.error} /> : null}
        {agents.data && list.length === 0 && <Empty>{q ? "No agent has that in its name." : "No agents yet."}</Empty>}
        {list.length > 0 && (
          <table class="table agents-table">
            <thead>
              <tr>
                {!readOnly && <th class="cell-check" />}
                <th>Name</th>
                <th class="num">Level</th>
                <th class="cell-coverage">Coverage</th>
                <th class="num">Documents</th>
                <th class="num">Chunks</th>
                <th>Measured</th>
                <th>Version</th>
              </tr>
            </thead>
            <tbody>
              {list.map((a) => (
                <tr key={a.agent_id} data-agent-id={a.agent_id}>
                  {!readOnly && (
                    <td class="cell-check">
                      <input type="checkbox" aria-label={`Select ${a.name}`} checked={selected.has(a.agent_id)} onChange={() => toggle(a.agent_id)} />
                    </td>
                  )}
                  <td>
                    <Link href={`/dashboard/agents/${a.agent_id}`}>{a.name}</Link>
                    <div class="muted mono small">{shortId(a.agent_id)}</div>
                  </td>
                  <td class="num">{a.level}</td>
                  <td class="cell-coverage">
                    <CoverageBar value={a.coverage_percent} />
                  </td>
                  <td class="num">{a.total_documents}</td>
                  <td class="num">{a.total_chunks}</td>
                  <td class="nowrap muted">{a.last_coverage_update ? formatAgo(a.last_coverage_update) : "never"}</td>
                  <td class="mono">{a.taxonomy_version}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <div class="pager">
          <button type="button" class="button" disabled={offset === 0} onClick={() => go({ offset: Math.max(0, offset - PAGE) })}>
            ← Previous
          </button>
          <span class="muted">
            {total === 0 ? "" : `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}`}
          </span>
          <button type="button" class="button" disabled={offset + PAGE >= total} onClick={() => go({ offset: offset + PAGE })}>
            Next →
          </button>
        </div>
      </Card>
    </div>
  );
}
