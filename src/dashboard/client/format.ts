/** Numbers and times as the pages show them. */
const pad = (n: number) => String(n).padStart(2, "0");

/** Local time, `YYYY-MM-DD HH:MM:SS`. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 850 ms, 12.3 s, 4 min 5 s, 2 h 10 min, 3 d 4 h. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function formatAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const ms = now - Date.parse(iso);
  return ms < 1000 ? "just now" : `${formatDuration(ms)} ago`;
}

export const formatPercent = (value: number, digits = 1) => `${value.toFixed(digits)}%`;

/**
 * The short form of an id for tables (the full id is in the link and its title). Task ids are
 * UUID v7, whose first digits are the creation time and the same for tasks made together: the
 * random tail tells them apart. Agent and node ids are random throughout: their head is enough.
 */
export function shortId(id: string): string {
  if (id.startsWith("agent-coverage-")) return `…${id.slice(-12)}`;
  return id.length > 13 ? id.slice(0, 8) : id;
}
