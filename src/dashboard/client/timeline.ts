/**
 * The task page's timeline: created, each attempt's start and end, the task's end. Pure (no DOM,
 * no JSX), so the unit tests read it as the page does.
 */
import { formatDuration } from "./format.ts";
import type { Task, TaskAttempt, TaskEvent } from "./types.ts";

export interface TimelineEntry {
  at: string | null;
  label: string;
  detail?: string;
  /** `retried`: an attempt that ended and sent the task back to the queue. */
  kind: "created" | "started" | "retried" | "ended" | "note";
}

const ranFor = (from: string | null, to: string) => (from ? formatDuration(Date.parse(to) - Date.parse(from)) : null);

function earlierAttempt(a: TaskAttempt): TimelineEntry[] {
  const ran = ranFor(a.started_at, a.ended_at);
  const detail = [
    a.outcome,
    ran ? `after ${ran}` : "",
    a.refunded ? "given back: not counted against the attempts" : "",
    "the task went back to the queue",
  ].filter(Boolean);
  return [
    { at: a.started_at, label: `Attempt ${a.attempt} started`, kind: "started", ...(a.started_at ? {} : { detail: "time not recorded" }) },
    { at: a.ended_at, label: `Attempt ${a.attempt} ended`, detail: detail.join("; "), kind: "retried" },
  ];
}

/**
 * What is known of the task's life. The attempts that sent the task back to the queue come from
 * `task.attempts` (PostgreSQL keeps their start, end and reason); the current or last attempt is
 * the task's started_at / completed_at. Only an attempt neither knows (the API that served the
 * task predates task_attempts) is filled in from the starts this page saw live (status events).
 */
export function timeline(task: Task, seen: TaskEvent[]): TimelineEntry[] {
  const entries: TimelineEntry[] = [{ at: task.created_at, label: "Created", detail: `${task.priority} priority`, kind: "created" }];
  const recorded = task.attempts ?? [];
  // The attempt the row itself describes: running, or the one that ended the task.
  const current = task.started_at && task.attempt > 0 ? task.attempt : null;
  const known = new Set(recorded.map((a) => a.attempt));
  if (current !== null) known.add(current);
  const liveStarts = new Map<number, string>();
  for (const e of seen) if (e.type === "status" && e.status === "running" && e.attempt > 0) liveStarts.set(e.attempt, e.at);

  // In attempt order; at one number, a refunded attempt comes before the one that reused its number.
  const byNumber: { n: number; entries: TimelineEntry[] }[] = recorded.map((a) => ({ n: a.attempt, entries: earlierAttempt(a) }));
  for (let n = 1; n <= task.attempt; n++) {
    if (known.has(n)) continue;
    const at = liveStarts.get(n) ?? null;
    const notes = [at ? "" : "time not recorded", n < task.attempt ? "it ended without ending the task, which went back to the queue" : ""].filter(Boolean);
    byNumber.push({ n, entries: [{ at, label: `Attempt ${n} started`, kind: "started", ...(notes.length > 0 ? { detail: notes.join("; ") } : {}) }] });
  }
  if (current !== null) byNumber.push({ n: current, entries: [{ at: task.started_at, label: `Attempt ${current} started`, kind: "started" }] });
  byNumber.sort((a, b) => a.n - b.n); // stable: the order above holds within a number
  for (const { entries: e } of byNumber) entries.push(...e);

  // It ran before (a refunded attempt leaves the counter at 0 but is recorded).
  const waited = task.attempt > 0 || recorded.length > 0;
  if (task.completed_at) {
    const ran = current !== null ? ranFor(task.started_at, task.completed_at) : null;
    entries.push({ at: task.completed_at, label: `Ended ${task.status}`, detail: ran ? `after ${ran}` : waited ? "while it waited for another attempt" : "before it started", kind: "ended" });
  } else if (task.status === "pending" && waited) {
    entries.push({ at: null, label: "Waiting for another attempt", kind: "note" });
  }
  return entries;
}
