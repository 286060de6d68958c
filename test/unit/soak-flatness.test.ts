/** The soak test's flatness verdict (bench/soak/flatness.ts): least squares, warm-up, floor and relative bound. */
import { describe, expect, test } from "bun:test";
import { judgeFlat, leastSquares, MIN_SAMPLES, warmupFor, type Sample } from "../../bench/soak/flatness.ts";
import { poolBounds } from "../../bench/soak/series.ts";

/** Samples every 10 s for `seconds`, value f(t). */
const every10s = (seconds: number, f: (t: number) => number): Sample[] => Array.from({ length: seconds / 10 + 1 }, (_, i) => ({ t: i * 10, v: f(i * 10) }));

const RULE = { warmupS: 120, windowS: 600, floor: 16, relative: 0.1 };

describe("leastSquares", () => {
  test("recovers the slope and intercept of a line, also through symmetric noise", () => {
    const line = leastSquares(every10s(600, (t) => 100 + 0.05 * t))!;
    expect(line.slope).toBeCloseTo(0.05, 10);
    expect(line.intercept).toBeCloseTo(100, 8);
    // A sawtooth of +-5 around the same line (alternating) leaves the slope nearly unchanged.
    const noisy = leastSquares(every10s(600, (t) => 100 + 0.05 * t + ((t / 10) % 2 === 0 ? 5 : -5)))!;
    expect(noisy.slope).toBeCloseTo(0.05, 2);
  });

  test("is null for fewer than two points or a single time", () => {
    expect(leastSquares([])).toBeNull();
    expect(leastSquares([{ t: 1, v: 2 }])).toBeNull();
    expect(leastSquares([{ t: 5, v: 1 }, { t: 5, v: 3 }])).toBeNull();
  });
});

describe("judgeFlat", () => {
  test("a flat series passes, with its growth near zero", () => {
    const v = judgeFlat(every10s(600, () => 200), RULE);
    expect(v.pass).toBe(true);
    expect(v.growth).toBeCloseTo(0, 10);
    expect(v.mean).toBe(200);
    expect(v.reason).toBeNull();
  });

  test("steady growth past the bound fails and says by how much; just under it passes", () => {
    // mean ~200 after warm-up -> allowed = max(16, 20) = 20 per 600 s.
    const leaking = judgeFlat(every10s(600, (t) => 180 + (25 / 600) * t), RULE);
    expect(leaking.pass).toBe(false);
    expect(leaking.growth).toBeCloseTo(25, 8);
    expect(leaking.allowed).toBeCloseTo(0.1 * leaking.mean, 10);
    expect(leaking.reason).toContain("more than");
    const slight = judgeFlat(every10s(600, (t) => 180 + (15 / 600) * t), RULE);
    expect(slight.pass).toBe(true);
  });

  test("the floor is the bound for a series near zero (a backlog of a few tasks)", () => {
    const backlog = judgeFlat(every10s(600, (t) => (t / 600) * 10), { ...RULE, floor: 16, relative: 0 });
    expect(backlog.allowed).toBe(16);
    expect(backlog.pass).toBe(true);
    expect(judgeFlat(every10s(600, (t) => (t / 600) * 20), { ...RULE, floor: 16, relative: 0 }).pass).toBe(false);
  });

  test("the warm-up is left out of the fit: a steep start then a plateau passes", () => {
    const warming = every10s(600, (t) => (t < 120 ? 100 + t : 220));
    expect(judgeFlat(warming, RULE).pass).toBe(true);
    expect(judgeFlat(warming, { ...RULE, warmupS: 0 }).pass).toBe(false);
  });

  test("a falling series passes (memory handed back is no leak)", () => {
    expect(judgeFlat(every10s(600, (t) => 300 - t / 2), RULE).pass).toBe(true);
  });

  test("too few samples after the warm-up fail rather than pass on no evidence", () => {
    const v = judgeFlat(every10s(130, () => 1), RULE);
    expect(v.samples).toBeLessThan(MIN_SAMPLES);
    expect(v.pass).toBe(false);
    expect(v.reason).toContain("samples after the warm-up");
    expect(v.slope).toBeNaN();
  });

  test("non-finite samples (a read that failed) are skipped", () => {
    const series = every10s(600, () => 50).map((s, i) => (i === 20 ? { t: s.t, v: Number.NaN } : s));
    const v = judgeFlat(series, RULE);
    expect(v.pass).toBe(true);
    expect(v.samples).toBe(48);
  });
});

test("warmupFor: two minutes, or a fifth of a shorter run", () => {
  expect(warmupFor(600)).toBe(120);
  expect(warmupFor(60)).toBe(12);
});

describe("judgeFlat with a ceiling (connections under their pools' bound)", () => {
  const CONNECTIONS = { warmupS: 120, windowS: 600, floor: 2, relative: 0 };
  // The last 10-minute soak's supervisor: 17 connections, a step to 19 (a pool opening one more).
  const step = (t: number) => (t < 400 ? 17 : 19);

  test("a step up within the bound passes; without a ceiling the same step fails the trend", () => {
    expect(judgeFlat(every10s(600, step), { ...CONNECTIONS, ceiling: 31 }).pass).toBe(true);
    const noCeiling = judgeFlat(every10s(600, step), CONNECTIONS);
    expect(noCeiling.pass).toBe(false);
  });

  test("growth past the bound fails, and the reason names the peak and the bound", () => {
    const leak = judgeFlat(every10s(600, (t) => 17 + Math.floor(t / 30)), { ...CONNECTIONS, ceiling: 31 });
    expect(leak.pass).toBe(false);
    expect(leak.reason).toContain("reaches 37, over its bound of 31");
  });
});

describe("poolBounds", () => {
  test("the supervisor's bound: the runtime pool, the webhook LISTEN connection, and per thread its pool and claim connection", () => {
    expect(poolBounds(2, 32)).toEqual({ api: 10, supervisor: 10 + 1 + 2 * (8 + 1 + 1) });
    expect(poolBounds(1, 4)).toEqual({ api: 10, supervisor: 10 + 1 + (4 + 1 + 1) });
  });
});
