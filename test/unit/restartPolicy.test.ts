/** RestartBudget: OTP-style restart intensity (at most maxRestarts in any windowMs). */
import { expect, test } from "bun:test";
import { RestartBudget } from "../../src/supervisor/restartPolicy.ts";

test("allows maxRestarts restarts within the window", () => {
  const budget = new RestartBudget({ maxRestarts: 3, windowMs: 1000 });
  expect(budget.allow(0)).toBe(true);
  expect(budget.allow(10)).toBe(true);
  expect(budget.allow(999)).toBe(true);
  expect(budget.recent).toBe(3);
});

test("refuses one restart more than maxRestarts within the window, and does not count the refused one", () => {
  const budget = new RestartBudget({ maxRestarts: 3, windowMs: 1000 });
  for (const at of [0, 10, 20]) expect(budget.allow(at)).toBe(true);
  expect(budget.allow(30)).toBe(false);
  expect(budget.allow(999)).toBe(false);
  expect(budget.recent).toBe(3);
});

test("the window slides: a restart older than windowMs no longer counts", () => {
  const budget = new RestartBudget({ maxRestarts: 2, windowMs: 1000 });
  expect(budget.allow(0)).toBe(true);
  expect(budget.allow(500)).toBe(true);
  expect(budget.allow(999)).toBe(false);
  // At 1000 the restart at 0 is exactly windowMs old: it has left the window.
  expect(budget.allow(1000)).toBe(true);
  // The restarts at 500 and 1000 are inside the window of 1499.
  expect(budget.allow(1499)).toBe(false);
  // At 1500 the restart at 500 leaves.
  expect(budget.allow(1500)).toBe(true);
  expect(budget.recent).toBe(2);
  // Long after, everything has left the window.
  expect(budget.allow(10_000)).toBe(true);
  expect(budget.recent).toBe(1);
});

test("maxRestarts 0 refuses every restart", () => {
  const budget = new RestartBudget({ maxRestarts: 0, windowMs: 1000 });
  expect(budget.allow(0)).toBe(false);
  expect(budget.allow(5000)).toBe(false);
  expect(budget.recent).toBe(0);
});
