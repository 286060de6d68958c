/** What a stopped task becomes (src/core/settle.ts): every way a task stops, and its ending. */
import { expect, test } from "bun:test";
import { endingFor, errorText, TIMEOUT_ERROR, type Stop } from "../../src/core/settle.ts";
import type { CoverageResult } from "../../src/coverage/meter.ts";

const result = { agent_id: "a", overall_coverage: 1, total_documents: 1, total_chunks: 1, node_coverage: {}, version: "1", calculated_at: "x" } as CoverageResult;

test("each way a task stops has one ending", () => {
  const table: [Stop, ReturnType<typeof endingFor>][] = [
    [{ how: "returned", result }, { kind: "completed", result }],
    [{ how: "threw", error: new Error("boom"), transient: false }, { kind: "failed", error: "boom" }],
    [{ how: "threw", error: new Error("reset"), transient: true }, { kind: "retry", error: "database connection lost: reset", refund: false }],
    [{ how: "stopped", reason: "timeout" }, { kind: "timeout", error: TIMEOUT_ERROR }],
    [{ how: "stopped", reason: "shutdown" }, { kind: "retry", error: "handed back on shutdown", refund: true }],
    // The API wrote `cancelled` itself; a lost lease belongs to someone else: nothing to write.
    [{ how: "stopped", reason: "cancelled" }, null],
    [{ how: "stopped", reason: "lease_lost" }, null],
    [{ how: "thread_crashed", code: 3 }, { kind: "retry", error: "worker thread crashed (exit code 3)", refund: false }],
    [{ how: "sibling_terminated" }, { kind: "retry", error: "handed back: its worker thread was terminated", refund: true }],
    [{ how: "lease_expired" }, { kind: "retry", error: "lease expired (owner died)", refund: false }],
  ];
  for (const [stop, ending] of table) expect(endingFor(stop)).toEqual(ending);
});

test("error texts are bounded and anything thrown becomes text", () => {
  expect(errorText("x".repeat(5000))).toHaveLength(2000);
  expect(errorText(42)).toBe("42");
  expect(() => endingFor({ how: "nope" } as unknown as Stop)).toThrow("unhandled stop");
  expect(() => endingFor({ how: "stopped", reason: "nope" } as unknown as Stop)).toThrow("unhandled stop");
});
