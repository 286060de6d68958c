/** Small tools of the engine benchmark: clock, percentiles, formatting, waiting for conditions. */

export const now = () => performance.now();

/** Nearest-rank percentile. */
export function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

export const fmtMs = (ms: number) =>
  !Number.isFinite(ms)
    ? "n/a"
    : ms >= 10_000
      ? `${(ms / 1000).toFixed(1)} s`
      : ms >= 100
        ? `${ms.toFixed(0)} ms`
        : ms >= 10
          ? `${ms.toFixed(1)} ms`
          : `${ms.toFixed(2)} ms`;
export const fmtRate = (r: number) => (!Number.isFinite(r) ? "n/a" : r >= 100 ? r.toFixed(0) : r.toFixed(1));
export const fmtInt = (n: number) => n.toLocaleString("en-US");
export const fmtRatio = (r: number) => (!Number.isFinite(r) ? "n/a" : r >= 10 ? r.toFixed(1) : r >= 1 ? r.toFixed(2) : r.toFixed(3));

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Something that can be waited for until a condition holds, re-checked on every notify(). */
export class Signal {
  private waiters = new Set<{ check: () => boolean; resolve: () => void }>();
  notify() {
    for (const w of this.waiters)
      if (w.check()) {
        this.waiters.delete(w);
        w.resolve();
      }
  }
  until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    let waiter!: { check: () => boolean; resolve: () => void };
    const p = new Promise<void>((resolve) => {
      waiter = { check, resolve };
      this.waiters.add(waiter);
    });
    return withTimeout(p, timeoutMs, what).finally(() => this.waiters.delete(waiter));
  }
}

/** Polls `check` every `everyMs` until it holds; resolves to the time it first held (now()). */
export async function pollUntil(check: () => Promise<boolean>, everyMs: number, timeoutMs: number, what: string): Promise<number> {
  const deadline = now() + timeoutMs;
  for (;;) {
    if (await check()) return now();
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

export const line = (cells: string[]) => `| ${cells.join(" | ")} |`;

export function table(header: string[], rows: string[][]): string[] {
  return [line(header), line(header.map(() => "---")), ...rows.map(line)];
}

export const ordinal = (n: number) => (n === 1 ? "" : n === 2 ? "2nd" : n === 3 ? "3rd" : `${n}th`);

/** Latency samples of one measure, ms. `capMs`: samples at the cap were cut off there (the real value is larger). */
export interface Latency {
  what: string;
  samples: number[];
  capMs?: number;
}
