/**
 * The webhook retry schedule, as pure functions (no clock, no randomness of their own):
 *
 *  - parsing `AGENTQ_WEBHOOK_SCHEDULE` (`5s,5m,30m,2h`: the wait before each retry, after the
 *    failure of the attempt before it; the first attempt is always immediate);
 *  - the doubling schedule the older settings describe (`AGENTQ_WEBHOOK_RETRIES` retries, the
 *    first after `AGENTQ_WEBHOOK_BACKOFF_MS`, each next one twice as long);
 *  - the wait before the next attempt: the schedule's step with jitter, and never earlier than
 *    a `Retry-After` the receiver sent (capped).
 *
 * src/config.ts validates the settings with these; the sender (sender.ts) computes each wait.
 */

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** The longest single step: 30 days. */
export const MAX_STEP_MS = 30 * UNIT_MS.d;
/** The most retries a schedule may list. */
export const MAX_STEPS = 50;

/**
 * The Standard Webhooks specification's example schedule (spec/standard-webhooks.md,
 * "Deliverability and reliability"): immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
 * 14 h, 20 h and 24 h: ten attempts over 75 h 35 min 5 s.
 */
export const STANDARD_WEBHOOKS_SCHEDULE_MS: readonly number[] = [
  5 * UNIT_MS.s,
  5 * UNIT_MS.m,
  30 * UNIT_MS.m,
  2 * UNIT_MS.h,
  5 * UNIT_MS.h,
  10 * UNIT_MS.h,
  14 * UNIT_MS.h,
  20 * UNIT_MS.h,
  24 * UNIT_MS.h,
];

/** `250ms`, `5s`, `1.5h`, `2d` in milliseconds (rounded to a whole millisecond), or why it is not a duration. */
export function parseDuration(text: string): { ms: number } | { problem: string } {
  const match = DURATION.exec(text);
  if (!match) return { problem: "is not a duration (a number and a unit: ms, s, m, h or d, e.g. 5s, 30m, 2h)" };
  const ms = Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
  if (ms > MAX_STEP_MS) return { problem: `is longer than the longest step allowed (30d)` };
  return { ms };
}

/** A comma-separated list of durations, or `none` (no retry); every bad entry is named (1-based) in `problems`. */
export function parseSchedule(text: string): { schedule: number[] } | { problems: string[] } {
  if (text.trim() === "none") return { schedule: [] };
  const entries = text.split(",").map((entry) => entry.trim());
  const problems: string[] = [];
  const schedule: number[] = [];
  entries.forEach((entry, i) => {
    if (entry === "") return problems.push(`entry ${i + 1} is empty`);
    const parsed = parseDuration(entry);
    if ("problem" in parsed) problems.push(`entry ${i + 1} (${JSON.stringify(entry)}) ${parsed.problem}`);
    else schedule.push(parsed.ms);
  });
  if (entries.length > MAX_STEPS) problems.push(`lists ${entries.length} retries, at most ${MAX_STEPS}`);
  return problems.length > 0 ? { problems } : { schedule };
}

/** `retries` waits, the first `backoffMs`, each next one twice the one before (1 s, 2 s, 4 s). */
export function doublingSchedule(retries: number, backoffMs: number): number[] {
  return Array.from({ length: retries }, (_, i) => backoffMs * 2 ** i);
}

/** A schedule in the notation it is configured in (`5s,5m,30m`): for logs, docs and the benchmark. */
export function formatSchedule(schedule: readonly number[]): string {
  return schedule.length === 0 ? "none" : schedule.map(formatDuration).join(",");
}

export function formatDuration(ms: number): string {
  // Days from two on (24h reads better than 1d beside 20h).
  for (const [unit, size] of [["d", UNIT_MS.d], ["h", UNIT_MS.h], ["m", UNIT_MS.m], ["s", UNIT_MS.s]] as const)
    if (ms >= (unit === "d" ? 2 * size : size) && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

export interface RetryPolicy {
  /** Wait before retry 1, 2, ... (milliseconds). */
  schedule: readonly number[];
  /** Spread of each wait: ±jitter of the step (0.2: 80% to 120%). */
  jitter: number;
  /** Longest Retry-After honoured. */
  maxRetryAfterMs: number;
}

/**
 * The wait before the next attempt, after the failure of attempt `attemptsInRound` of the
 * round (1 = the first attempt failed); null when the schedule is spent (the delivery is dead).
 *
 * - The schedule's step, spread uniformly over ±jitter of it (proportional jitter: a step of
 *   10 h stays between 8 h and 12 h, so the schedule keeps its shape; "full" jitter, 0 to the
 *   step, would turn 10 h into anything from nothing to 10 h).
 * - A Retry-After (already converted to milliseconds from now) is a floor: the larger of the
 *   two is taken. The receiver's wish is capped at `maxRetryAfterMs` and spread upwards only
 *   (up to +jitter), so deliveries all told "come back at 12:00" do not all come back at once,
 *   and none comes back before the receiver asked.
 *
 * Milliseconds, fractional (next_attempt_at keeps microseconds). `random` is in [0, 1)
 * (Math.random; tests pass their own).
 */
export function retryDelayMs(
  policy: RetryPolicy,
  attemptsInRound: number,
  retryAfterMs: number | null,
  random: () => number = Math.random,
): number | null {
  const step = policy.schedule[attemptsInRound - 1];
  if (step === undefined) return null;
  const scheduled = step * (1 + policy.jitter * (2 * random() - 1));
  const asked = retryAfterMs === null ? 0 : Math.min(retryAfterMs, policy.maxRetryAfterMs) * (1 + policy.jitter * random());
  return Math.max(scheduled, asked);
}
