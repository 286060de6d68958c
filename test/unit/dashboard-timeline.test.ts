/** The task page's timeline (src/dashboard/client/timeline.ts): recorded attempts first, live starts only where nothing is recorded. */
import { describe, expect, test } from "bun:test";
import { timeline } from "../../src/dashboard/client/timeline.ts";
import type { Task, TaskAttempt, TaskEvent } from "../../src/dashboard/client/types.ts";

const base: Task = {
  task_id: "agent-coverage-01900000-0000-7000-8000-000000000001",
  agent_id: "11111111-1111-4111-8111-111111111111",
  task_type: "coverage_refresh",
  status: "pending",
  priority: "high",
  created_at: "2026-12-01T10:00:00.000Z",
  started_at: null,
  completed_at: null,
  progress_percentage: 0,
  error: null,
  webhook_url: null,
  attempt: 0,
  max_attempts: 3,
  timeout_ms: 60_000,
  lease_owner: null,
  updated_at: "2026-12-01T10:00:00.000Z",
  queue_position: 1,
  estimated_completion_at: null,
  result: null,
};

const attempt = (n: number, start: string | null, end: string, outcome: string, refunded = false): TaskAttempt => ({
  attempt: n,
  started_at: start,
  ended_at: end,
  outcome,
  refunded,
});

const started = (n: number, at: string): TaskEvent => ({ type: "status", task_id: base.task_id, agent_id: base.agent_id, status: "running", percent: 0, attempt: n, at });

describe("timeline", () => {
  test("a pending task never started: created only", () => {
    expect(timeline(base, []).map((e) => e.label)).toEqual(["Created"]);
  });

  test("a task that completed first time: created, its start, its end with the run time", () => {
    const done = { ...base, status: "completed" as const, attempt: 1, started_at: "2026-12-01T10:00:01.000Z", completed_at: "2026-12-01T10:00:03.500Z" };
    expect(timeline(done, [])).toEqual([
      { at: base.created_at, label: "Created", detail: "high priority", kind: "created" },
      { at: done.started_at, label: "Attempt 1 started", kind: "started" },
      { at: done.completed_at, label: "Ended completed", detail: "after 2.5 s", kind: "ended" },
    ]);
  });

  test("recorded earlier attempts show their start, their end and why, then the current attempt", () => {
    const task: Task = {
      ...base,
      status: "running",
      attempt: 3,
      started_at: "2026-12-01T10:01:00.000Z",
      attempts: [
        attempt(1, "2026-12-01T10:00:01.000Z", "2026-12-01T10:00:02.000Z", "lease expired (owner died)"),
        attempt(2, "2026-12-01T10:00:10.000Z", "2026-12-01T10:00:40.000Z", "worker thread crashed (exit code 3)"),
      ],
    };
    // A live start of attempt 1 does not replace the recorded one.
    expect(timeline(task, [started(1, "2026-12-01T10:00:01.500Z")])).toEqual([
      { at: base.created_at, label: "Created", detail: "high priority", kind: "created" },
      { at: "2026-12-01T10:00:01.000Z", label: "Attempt 1 started", kind: "started" },
      { at: "2026-12-01T10:00:02.000Z", label: "Attempt 1 ended", detail: "lease expired (owner died); after 1.0 s; the task went back to the queue", kind: "retried" },
      { at: "2026-12-01T10:00:10.000Z", label: "Attempt 2 started", kind: "started" },
      { at: "2026-12-01T10:00:40.000Z", label: "Attempt 2 ended", detail: "worker thread crashed (exit code 3); after 30 s; the task went back to the queue", kind: "retried" },
      { at: task.started_at, label: "Attempt 3 started", kind: "started" },
    ]);
  });

  test("a refunded attempt comes before the attempt that used its number again; waiting in between is a note", () => {
    const handedBack = attempt(1, "2026-12-01T10:00:01.000Z", "2026-12-01T10:00:05.000Z", "handed back on shutdown", true);
    const waiting: Task = { ...base, attempt: 0, attempts: [handedBack] };
    expect(timeline(waiting, []).map((e) => [e.label, e.detail])).toEqual([
      ["Created", "high priority"],
      ["Attempt 1 started", undefined],
      ["Attempt 1 ended", "handed back on shutdown; after 4.0 s; given back: not counted against the attempts; the task went back to the queue"],
      ["Waiting for another attempt", undefined],
    ]);
    const rerun: Task = { ...waiting, status: "completed", attempt: 1, started_at: "2026-12-01T10:01:00.000Z", completed_at: "2026-12-01T10:01:01.000Z" };
    expect(timeline(rerun, []).map((e) => [e.label, e.at])).toEqual([
      ["Created", base.created_at],
      ["Attempt 1 started", "2026-12-01T10:00:01.000Z"],
      ["Attempt 1 ended", "2026-12-01T10:00:05.000Z"],
      ["Attempt 1 started", "2026-12-01T10:01:00.000Z"],
      ["Ended completed", "2026-12-01T10:01:01.000Z"],
    ]);
  });

  test("an attempt nothing recorded is filled from a live start, or says its time was not recorded", () => {
    // An API without task_attempts: no `attempts`, attempt 3 running.
    const task: Task = { ...base, status: "running", attempt: 3, started_at: "2026-12-01T10:01:00.000Z" };
    const entries = timeline(task, [started(2, "2026-12-01T10:00:30.000Z"), { ...started(2, "x"), type: "progress" }]);
    expect(entries.slice(1)).toEqual([
      { at: null, label: "Attempt 1 started", detail: "time not recorded; it ended without ending the task, which went back to the queue", kind: "started" },
      { at: "2026-12-01T10:00:30.000Z", label: "Attempt 2 started", detail: "it ended without ending the task, which went back to the queue", kind: "started" },
      { at: task.started_at, label: "Attempt 3 started", kind: "started" },
    ]);
  });

  test("an attempt with no recorded start, and a task cancelled while it waited for another attempt", () => {
    const task: Task = {
      ...base,
      status: "cancelled",
      attempt: 1,
      completed_at: "2026-12-01T10:02:00.000Z",
      attempts: [attempt(1, null, "2026-12-01T10:00:02.000Z", "lease expired (owner died)")],
    };
    expect(timeline(task, []).slice(1)).toEqual([
      { at: null, label: "Attempt 1 started", detail: "time not recorded", kind: "started" },
      { at: "2026-12-01T10:00:02.000Z", label: "Attempt 1 ended", detail: "lease expired (owner died); the task went back to the queue", kind: "retried" },
      { at: task.completed_at, label: "Ended cancelled", detail: "while it waited for another attempt", kind: "ended" },
    ]);
    const never: Task = { ...base, status: "cancelled", completed_at: "2026-12-01T10:02:00.000Z" };
    expect(timeline(never, []).at(-1)).toMatchObject({ label: "Ended cancelled", detail: "before it started" });
  });
});
