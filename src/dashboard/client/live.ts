/**
 * Live task events from the API's Server-Sent Events streams, with the session cookie:
 *
 *   GET /api/v1/events?agent_id=&status=   `progress` and `status` events of every matching
 *                                           task; `resync` when some may have been missed
 *   GET /api/v1/tasks/{id}/events          `task` (the task itself) first, then its `progress`
 *                                           and `status` events; the server closes the stream
 *                                           after the terminal status
 *
 * EventSource reconnects by itself (events sent meanwhile are lost to it), so `onOpen`, called
 * on every (re)connection, and `onResync` are where a page re-reads what it shows. A handler
 * that returns "close" ends the subscription (a task that has ended says nothing more).
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type { Task, TaskEvent } from "./types.ts";

export type LiveState = "connecting" | "live" | "reconnecting" | "ended";

type Outcome = void | "close";

export interface LiveHandlers {
  onEvent(event: TaskEvent): Outcome;
  onTask?(task: Task): Outcome;
  onOpen?(): void;
  onResync?(): void;
  onDeleted?(): void;
}

function parse<T>(data: unknown): T | null {
  try {
    const value = JSON.parse(String(data)) as unknown;
    return typeof value === "object" && value !== null ? (value as T) : null;
  } catch {
    return null;
  }
}

/** Subscribes while mounted and `url` is not null; the handlers may change between renders. */
export function useTaskEvents(url: string | null, handlers: LiveHandlers): LiveState {
  const [state, setState] = useState<LiveState>("connecting");
  const current = useRef(handlers);
  current.current = handlers;
  useEffect(() => {
    if (url === null) return;
    setState("connecting");
    const source = new EventSource(url, { withCredentials: true });
    const end = () => {
      source.close();
      setState("ended");
    };
    const onChange = (e: MessageEvent) => {
      const event = parse<TaskEvent>(e.data);
      if (event && typeof event.task_id === "string" && current.current.onEvent(event) === "close") end();
    };
    source.addEventListener("progress", onChange as EventListener);
    source.addEventListener("status", onChange as EventListener);
    source.addEventListener("task", ((e: MessageEvent) => {
      const task = parse<Task>(e.data);
      if (task && current.current.onTask?.(task) === "close") end();
    }) as EventListener);
    source.addEventListener("resync", () => current.current.onResync?.());
    source.addEventListener("deleted", () => {
      current.current.onDeleted?.();
      end();
    });
    source.onopen = () => {
      setState("live");
      current.current.onOpen?.();
    };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) setState("reconnecting");
    };
    return () => source.close();
  }, [url]);
  return state;
}

/** Calls `fn` at most once per `ms` (the last call of a burst always runs). */
export function useThrottled(fn: () => void, ms: number): () => void {
  const state = useRef<{ timer: number | null; last: number; fn: () => void }>({ timer: null, last: 0, fn });
  state.current.fn = fn;
  useEffect(() => () => void (state.current.timer !== null && clearTimeout(state.current.timer)), []);
  return () => {
    const s = state.current;
    if (s.timer !== null) return;
    const wait = Math.max(0, s.last + ms - Date.now());
    s.timer = window.setTimeout(() => {
      s.timer = null;
      s.last = Date.now();
      s.fn();
    }, wait);
  };
}

/** Re-renders every `ms` (for ages and countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
