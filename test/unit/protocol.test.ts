/** The supervisor <-> worker protocol guards, and the task state rules of src/core/tasks.ts. */
import { describe, expect, test } from "bun:test";
import {
  isSupervisorMessage,
  isWorkerMessage,
  type SupervisorMessage,
  type WorkerMessage,
  type WorkerSettings,
} from "../../src/protocol/messages.ts";
import {
  canMove,
  isTerminal,
  newTaskId,
  PRIORITIES,
  TASK_ID_PATTERN,
  TASK_STATUSES,
  TERMINAL_STATUSES,
  type TaskStatus,
} from "../../src/core/tasks.ts";

const settings: WorkerSettings = {
  databaseUrl: "postgres://root@127.0.0.1:5432/x",
  redis: { mode: "single", url: "redis://127.0.0.1:6379/0" },
  redisPrefix: "p",
  confidenceThreshold: 0.7,
  defaultTargetDocuments: 10,
  leaseMs: 1000,
  concurrency: 1,
  claimCooldownMs: 0,
  popTimeoutSeconds: 1,
};

/** One valid message of every WorkerMessage type (the Record makes a new type a compile error here). */
const VALID_WORKER: Record<WorkerMessage["type"], WorkerMessage[]> = {
  ready: [{ type: "ready", workerId: "w1" }],
  started: [
    { type: "started", taskId: "t", agentId: "a", priority: "high", leaseToken: "l", attempt: 1, timeoutMs: 1000, waitMs: 0 },
    { type: "started", taskId: "t", agentId: "a", priority: "low", leaseToken: "l", attempt: 3, timeoutMs: 1000, waitMs: 12.5 },
  ],
  progress: [
    { type: "progress", taskId: "t", percent: 0 },
    { type: "progress", taskId: "t", percent: 55.5 },
  ],
  completed: [{ type: "completed", taskId: "t", durationMs: 12 }],
  failed: [{ type: "failed", taskId: "t", error: "boom" }],
  cancelled: [{ type: "cancelled", taskId: "t" }],
  timed_out: [{ type: "timed_out", taskId: "t" }],
  released: [
    { type: "released", taskId: "t", status: "pending", reason: "shutdown" },
    { type: "released", taskId: "t", status: "pending", reason: "connection_lost" },
    { type: "released", taskId: "t", status: "failed", reason: "connection_lost" },
    { type: "released", taskId: "t", status: "cancelled", reason: "shutdown" },
    { type: "released", taskId: "t", status: "unchanged", reason: "lease_lost" },
    { type: "released", taskId: "t", status: "unchanged", reason: "bookkeeping_failed" },
  ],
  drained: [{ type: "drained" }],
  deferred: [{ type: "deferred", count: 3 }],
  log: [
    { type: "log", level: "info", msg: "hello" },
    { type: "log", level: "error", msg: "bad", fields: { a: 1 } },
  ],
};

const VALID_SUPERVISOR: Record<SupervisorMessage["type"], SupervisorMessage[]> = {
  init: [{ type: "init", workerId: "w1", settings }],
  cancel: [
    { type: "cancel", taskId: "t", reason: "cancelled" },
    { type: "cancel", taskId: "t", reason: "timeout" },
    { type: "cancel", taskId: "t", reason: "shutdown" },
    { type: "cancel", taskId: "t", reason: "lease_lost" },
  ],
  drain: [{ type: "drain" }],
};

const NOT_OBJECTS: unknown[] = [null, undefined, 0, 1, "ready", true, [], [{ type: "ready", workerId: "w" }]];

describe("isWorkerMessage", () => {
  test.each(Object.values(VALID_WORKER).flat().map((m) => [m.type, m] as const))("accepts a valid %s message", (_type, message) => {
    expect(isWorkerMessage(message)).toBe(true);
  });

  const malformed: [string, unknown][] = [
    ...NOT_OBJECTS.map((v): [string, unknown] => [`non-object ${JSON.stringify(v)}`, v]),
    ["no type", { workerId: "w" }],
    ["non-string type", { type: 1 }],
    ["unknown type", { type: "exploded", taskId: "t" }],
    ["a supervisor message", { type: "drain" }],
    ["ready without workerId", { type: "ready" }],
    ["ready with numeric workerId", { type: "ready", workerId: 1 }],
    ["started without leaseToken", { type: "started", taskId: "t", agentId: "a", priority: "high", attempt: 1, timeoutMs: 1, waitMs: 0 }],
    ["started with string attempt", { type: "started", taskId: "t", agentId: "a", priority: "high", leaseToken: "l", attempt: "1", timeoutMs: 1, waitMs: 0 }],
    ["started without timeoutMs", { type: "started", taskId: "t", agentId: "a", priority: "high", leaseToken: "l", attempt: 1, waitMs: 0 }],
    ["started without agentId", { type: "started", taskId: "t", priority: "high", leaseToken: "l", attempt: 1, timeoutMs: 1, waitMs: 0 }],
    ["started with an unknown priority", { type: "started", taskId: "t", agentId: "a", priority: "urgent", leaseToken: "l", attempt: 1, timeoutMs: 1, waitMs: 0 }],
    ["started without waitMs", { type: "started", taskId: "t", agentId: "a", priority: "high", leaseToken: "l", attempt: 1, timeoutMs: 1 }],
    ["started with NaN waitMs", { type: "started", taskId: "t", agentId: "a", priority: "high", leaseToken: "l", attempt: 1, timeoutMs: 1, waitMs: Number.NaN }],
    ["progress with NaN percent", { type: "progress", taskId: "t", percent: Number.NaN }],
    ["progress with Infinity percent", { type: "progress", taskId: "t", percent: Number.POSITIVE_INFINITY }],
    ["progress with string percent", { type: "progress", taskId: "t", percent: "50" }],
    ["progress without taskId", { type: "progress", percent: 50 }],
    ["completed without durationMs", { type: "completed", taskId: "t" }],
    ["failed without error", { type: "failed", taskId: "t" }],
    ["failed with object error", { type: "failed", taskId: "t", error: { message: "x" } }],
    ["cancelled without taskId", { type: "cancelled" }],
    ["timed_out with numeric taskId", { type: "timed_out", taskId: 7 }],
    ["released without taskId", { type: "released", status: "pending", reason: "shutdown" }],
    ["released without status", { type: "released", taskId: "t", reason: "shutdown" }],
    ["released with a status it cannot have", { type: "released", taskId: "t", status: "completed", reason: "shutdown" }],
    ["released without reason", { type: "released", taskId: "t", status: "pending" }],
    ["released with an unknown reason", { type: "released", taskId: "t", status: "pending", reason: "bored" }],
    ["deferred without count", { type: "deferred" }],
    ["deferred with string count", { type: "deferred", count: "3" }],
    ["log without msg", { type: "log", level: "info" }],
    ["log without level", { type: "log", msg: "x" }],
  ];
  test.each(malformed)("rejects %s", (_name, value) => {
    expect(isWorkerMessage(value)).toBe(false);
  });
});

describe("isSupervisorMessage", () => {
  test.each(Object.values(VALID_SUPERVISOR).flat().map((m) => [m.type, m] as const))("accepts a valid %s message", (_type, message) => {
    expect(isSupervisorMessage(message)).toBe(true);
  });

  const malformed: [string, unknown][] = [
    ...NOT_OBJECTS.map((v): [string, unknown] => [`non-object ${JSON.stringify(v)}`, v]),
    ["no type", { taskId: "t" }],
    ["unknown type", { type: "explode" }],
    ["a worker message", { type: "ready", workerId: "w" }],
    ["init without settings", { type: "init", workerId: "w" }],
    ["init with null settings", { type: "init", workerId: "w", settings: null }],
    ["init without workerId", { type: "init", settings }],
    ["cancel with an unknown reason", { type: "cancel", taskId: "t", reason: "because" }],
    ["cancel without reason", { type: "cancel", taskId: "t" }],
    ["cancel without taskId", { type: "cancel", reason: "cancelled" }],
  ];
  test.each(malformed)("rejects %s", (_name, value) => {
    expect(isSupervisorMessage(value)).toBe(false);
  });
});

describe("task states", () => {
  test("isTerminal is true exactly for completed, failed, cancelled and timeout", () => {
    expect(TASK_STATUSES.filter((s) => isTerminal(s))).toEqual(["completed", "failed", "cancelled", "timeout"]);
    expect([...TERMINAL_STATUSES].sort()).toEqual(["cancelled", "completed", "failed", "timeout"]);
    expect(isTerminal("pending")).toBe(false);
    expect(isTerminal("running")).toBe(false);
    expect(isTerminal("nonsense")).toBe(false);
  });

  test("canMove allows exactly the documented transitions", () => {
    const allowed: [TaskStatus, TaskStatus][] = [
      ["pending", "running"],
      ["pending", "cancelled"],
      ["pending", "failed"],
      ["running", "completed"],
      ["running", "failed"],
      ["running", "cancelled"],
      ["running", "timeout"],
      ["running", "pending"],
    ];
    const key = (from: string, to: string) => `${from}->${to}`;
    const expected = new Set(allowed.map(([f, t]) => key(f, t)));
    for (const from of TASK_STATUSES)
      for (const to of TASK_STATUSES) expect({ move: key(from, to), ok: canMove(from, to) }).toEqual({ move: key(from, to), ok: expected.has(key(from, to)) });
  });

  test("nothing leaves a terminal status", () => {
    for (const from of TERMINAL_STATUSES) for (const to of TASK_STATUSES) expect(canMove(from, to)).toBe(false);
  });

  test("pending cannot skip straight to completed or timeout", () => {
    expect(canMove("pending", "completed")).toBe(false);
    expect(canMove("pending", "timeout")).toBe(false);
  });

  test("priorities are ordered high, medium, low", () => {
    expect([...PRIORITIES]).toEqual(["high", "medium", "low"]);
  });
});

describe("newTaskId", () => {
  test("has the shape agent-coverage-<uuid v7> and matches TASK_ID_PATTERN", () => {
    const pattern = new RegExp(TASK_ID_PATTERN);
    for (let i = 0; i < 100; i++) {
      const id = newTaskId();
      expect(id).toMatch(pattern);
      expect(id.startsWith("agent-coverage-")).toBe(true);
      // version nibble 7, RFC 4122 variant
      expect(id.slice("agent-coverage-".length)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });

  test("TASK_ID_PATTERN rejects other shapes", () => {
    const pattern = new RegExp(TASK_ID_PATTERN);
    for (const bad of [
      "agent-coverage-not-a-uuid",
      `agent-coverage-${crypto.randomUUID()}`, // v4, not v7
      newTaskId().toUpperCase(),
      `x${newTaskId()}`,
      `${newTaskId()}x`,
      newTaskId().replace("agent-coverage-", "task-"),
    ])
      expect(bad).not.toMatch(pattern);
  });

  test("ids are unique and time-ordered: generation order is sort order", () => {
    const ids: string[] = [];
    for (let i = 0; i < 2000; i++) ids.push(newTaskId());
    // Across a millisecond boundary too: keep generating until the clock ticks twice.
    const start = Date.now();
    while (Date.now() < start + 2) ids.push(newTaskId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  test("the embedded timestamp is the creation time", () => {
    const before = Date.now();
    const id = newTaskId();
    const after = Date.now();
    const hex = id.slice("agent-coverage-".length).replace(/-/g, "").slice(0, 12);
    const ms = Number.parseInt(hex, 16);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(after);
  });
});
