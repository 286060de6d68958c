/** Small pieces every page uses. */
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api.ts";
import type { LiveState } from "./live.ts";
import type { Priority, TaskStatus } from "./types.ts";

export function StatusBadge({ status }: { status: TaskStatus }) {
  return <span class={`badge status-${status}`} data-status={status}>{status}</span>;
}

export function PriorityBadge({ priority }: { priority: Priority }) {
  return <span class={`badge priority-${priority}`}>{priority}</span>;
}

/** A bar with its value; `value` 0..100. */
export function ProgressBar({ value, status }: { value: number; status?: TaskStatus }) {
  const clamped = Math.max(0, Math.min(100, Math.round(value)));
  return (
    <div class={`progress ${status ? `progress-${status}` : ""}`} role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={clamped}>
      <div class="progress-fill" style={{ width: `${clamped}%` }} />
      <span class="progress-label">{clamped}%</span>
    </div>
  );
}

export function LiveIndicator({ state }: { state: LiveState }) {
  const text = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…", ended: "ended" }[state];
  return (
    <span class={`live live-${state}`} data-live={state} title="Updates arrive by Server-Sent Events">
      <span class="live-dot" />
      {text}
    </span>
  );
}

export function Card({ title, children, class: cls, actions }: { title?: string; children: ComponentChildren; class?: string; actions?: ComponentChildren }) {
  return (
    <section class={`card ${cls ?? ""}`}>
      {(title || actions) && (
        <header class="card-header">
          {title && <h2>{title}</h2>}
          {actions && <div class="card-actions">{actions}</div>}
        </header>
      )}
      {children}
    </section>
  );
}

export function ErrorNote({ error }: { error: unknown }) {
  const message = error instanceof ApiError ? `${error.message} (${error.code})` : error instanceof Error ? error.message : String(error);
  return (
    <p class="error-note" role="alert">
      {message}
    </p>
  );
}

export type Flash = { kind: "ok" | "error"; text: string } | null;

/** A message after an action; it fades after a while. */
export function useFlash(): [Flash, (kind: "ok" | "error", text: string) => void] {
  const [flash, setFlash] = useState<Flash>(null);
  const timer = useRef<number | null>(null);
  const show = useCallback((kind: "ok" | "error", text: string) => {
    setFlash({ kind, text });
    if (timer.current !== null) clearTimeout(timer.current);
    timer.current = window.setTimeout(() => setFlash(null), 8000);
  }, []);
  useEffect(() => () => void (timer.current !== null && clearTimeout(timer.current)), []);
  return [flash, show];
}

export function FlashNote({ flash }: { flash: Flash }) {
  if (!flash) return null;
  return (
    <p class={`flash flash-${flash.kind}`} role="status">
      {flash.text}
    </p>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload(): void;
  /** Replaces the data (e.g. from a live event) without a request. */
  set(update: (old: T | undefined) => T | undefined): void;
}

/** Loads `fetcher()` when `key` changes; `reload()` fetches again, keeping the old data on screen. */
export function useLoad<T>(key: string, fetcher: () => Promise<T>): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const run = useCallback(() => {
    const mine = ++generation.current;
    setLoading(true);
    fetcherRef.current().then(
      (value) => {
        if (mine !== generation.current) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (mine !== generation.current) return;
        setError(e);
        setLoading(false);
      },
    );
  }, []);
  useEffect(() => {
    setData(undefined);
    run();
  }, [key]);
  return { data, error, loading, reload: run, set: (update) => setData((old) => update(old)) };
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

export function Stat({ label, value, hint, id }: { label: string; value: ComponentChildren; hint?: ComponentChildren; id?: string }) {
  return (
    <div class="stat" data-stat={id}>
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {hint !== undefined && <div class="stat-hint">{hint}</div>}
    </div>
  );
}
