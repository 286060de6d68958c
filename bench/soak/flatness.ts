/**
 * The soak test's verdict on one sampled series: is it flat after the warm-up?
 *
 * A least-squares line through the samples taken after the warm-up gives the series' trend;
 * its slope, times the judged window (10 minutes by default), is the growth the trend
 * predicts over that window. The series passes when that growth is at most the allowed bound:
 * the larger of an absolute floor (in the series' unit; it keeps a series that sits near zero,
 * like an empty backlog, from failing on a handful of items) and a share of the series' mean
 * level (a large series may wobble by a few percent as the garbage collector works).
 * Only growth fails: a series that falls (memory handed back) is flat enough.
 * A series with a `ceiling` (PostgreSQL connections: the sum of the process's pool bounds) also
 * passes while no sample exceeds it: a pool opens connections lazily up to its bound, so a step
 * up to it is not a leak, and a leak (pools opened and never closed) goes past it.
 * Pure functions, tested in test/unit/soak-flatness.test.ts.
 */

export interface Sample {
  /** Seconds since the steady load started. */
  t: number;
  v: number;
}

export interface Line {
  /** Units per second. */
  slope: number;
  intercept: number;
}

/** The least-squares line through the points; null with fewer than two distinct times. */
export function leastSquares(points: readonly Sample[]): Line | null {
  const n = points.length;
  if (n < 2) return null;
  let st = 0;
  let sv = 0;
  for (const p of points) {
    st += p.t;
    sv += p.v;
  }
  const mt = st / n;
  const mv = sv / n;
  let stt = 0;
  let stv = 0;
  for (const p of points) {
    stt += (p.t - mt) * (p.t - mt);
    stv += (p.t - mt) * (p.v - mv);
  }
  if (stt === 0) return null;
  const slope = stv / stt;
  return { slope, intercept: mv - slope * mt };
}

export interface Bound {
  /** Growth always allowed over the window, in the series' unit. */
  floor: number;
  /** Growth allowed as a share of the mean level after the warm-up (0.1 = 10%). */
  relative: number;
  /** A hard bound of the series (a pool's maximum): never exceeded, the series passes whatever its trend. */
  ceiling?: number;
}

export interface FlatnessRule extends Bound {
  /** Samples before this many seconds of load are left out of the fit. */
  warmupS: number;
  /** The window the growth is projected over, in seconds (600: "per 10 minutes"). */
  windowS: number;
}

export interface Verdict {
  pass: boolean;
  /** Samples fitted (after the warm-up). */
  samples: number;
  /** Units per second; NaN when there were too few samples. */
  slope: number;
  /** slope x windowS. */
  growth: number;
  /** max(floor, relative x mean). */
  allowed: number;
  mean: number;
  /** Why it failed, or null. */
  reason: string | null;
}

/** Fewer samples than this after the warm-up and the trend means nothing: the series fails. */
export const MIN_SAMPLES = 3;

export function judgeFlat(series: readonly Sample[], rule: FlatnessRule): Verdict {
  const fitted = series.filter((s) => s.t >= rule.warmupS && Number.isFinite(s.v));
  const mean = fitted.length > 0 ? fitted.reduce((a, s) => a + s.v, 0) / fitted.length : Number.NaN;
  const allowed = Math.max(rule.floor, rule.relative * (Number.isFinite(mean) ? Math.abs(mean) : 0));
  const line = fitted.length >= MIN_SAMPLES ? leastSquares(fitted) : null;
  if (!line) {
    return {
      pass: false,
      samples: fitted.length,
      slope: Number.NaN,
      growth: Number.NaN,
      allowed,
      mean,
      reason: `only ${fitted.length} samples after the warm-up (at least ${MIN_SAMPLES} at distinct times are needed)`,
    };
  }
  const growth = line.slope * rule.windowS;
  const peak = Math.max(...fitted.map((s) => s.v));
  const underCeiling = rule.ceiling !== undefined && peak <= rule.ceiling;
  const pass = growth <= allowed || underCeiling;
  const over = `grows ${growth.toPrecision(3)} per ${rule.windowS} s, more than the ${allowed.toPrecision(3)} allowed`;
  return {
    pass,
    samples: fitted.length,
    slope: line.slope,
    growth,
    allowed,
    mean,
    reason: pass ? null : rule.ceiling === undefined ? over : `${over}, and reaches ${peak}, over its bound of ${rule.ceiling}`,
  };
}

/**
 * The warm-up of a run of `loadS` seconds: the first 2 minutes, or the first fifth of a
 * shorter run (a 1-minute development run keeps 48 s of samples to fit).
 */
export function warmupFor(loadS: number): number {
  return Math.min(120, loadS / 5);
}
