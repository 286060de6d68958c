/**
 * The webhook retry schedule: parsing AGENTQ_WEBHOOK_SCHEDULE, the doubling schedule of the
 * older settings and its precedence, the errors that stop the start, and the wait before each
 * retry (jitter bounds, Retry-After as a floor, its cap).
 */
import { describe, expect, test } from "bun:test";
import { ConfigError, DEFAULTS, loadConfig } from "../../src/config.ts";
import {
  doublingSchedule,
  formatSchedule,
  parseDuration,
  parseSchedule,
  retryDelayMs,
  STANDARD_WEBHOOKS_SCHEDULE_MS,
  type RetryPolicy,
} from "../../src/webhooks/schedule.ts";
import { parseRetryAfter } from "../../src/webhooks/deliver.ts";
import { deadReasonOf } from "../../src/webhooks/sender.ts";

const S = 1000;
const M = 60 * S;
const H = 60 * M;

const configError = (env: Record<string, string>): ConfigError => {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(env)}`);
};

describe("durations and schedules", () => {
  test("a duration is a number and a unit: ms, s, m, h, d", () => {
    expect(parseDuration("250ms")).toEqual({ ms: 250 });
    expect(parseDuration("5s")).toEqual({ ms: 5 * S });
    expect(parseDuration("30m")).toEqual({ ms: 30 * M });
    expect(parseDuration("1.5h")).toEqual({ ms: 90 * M });
    expect(parseDuration("2d")).toEqual({ ms: 48 * H });
    expect(parseDuration("0s")).toEqual({ ms: 0 });
    for (const bad of ["5", "5x", "-1s", "", "s", "1e3s", "5 s", "5S", "1h30m", "0x10s"]) expect({ bad, parsed: "problem" in parseDuration(bad) }).toEqual({ bad, parsed: true });
    expect(parseDuration("31d")).toEqual({ problem: "is longer than the longest step allowed (30d)" });
  });

  test("a schedule is a comma-separated list, blanks around entries ignored; every bad entry is named by position", () => {
    expect(parseSchedule("5s, 5m ,30m,2h")).toEqual({ schedule: [5 * S, 5 * M, 30 * M, 2 * H] });
    expect(parseSchedule("none")).toEqual({ schedule: [] });
    expect(parseSchedule("5s,,5m,oops")).toEqual({
      problems: ['entry 2 is empty', 'entry 4 ("oops") is not a duration (a number and a unit: ms, s, m, h or d, e.g. 5s, 30m, 2h)'],
    });
    expect(parseSchedule(Array(51).fill("1s").join(","))).toEqual({ problems: ["lists 51 retries, at most 50"] });
  });

  test("the doubling schedule: N retries from the first delay (the original plan's 1 s, 2 s, 4 s)", () => {
    expect(doublingSchedule(3, 1000)).toEqual([1000, 2000, 4000]);
    expect(doublingSchedule(0, 1000)).toEqual([]);
    expect(formatSchedule(doublingSchedule(3, 1000))).toBe("1s,2s,4s");
    expect(formatSchedule(STANDARD_WEBHOOKS_SCHEDULE_MS)).toBe("5s,5m,30m,2h,5h,10h,14h,20h,24h");
    expect(formatSchedule([])).toBe("none");
  });
});

describe("configuration", () => {
  test("the default is the Standard Webhooks schedule: ten attempts over 75 h 35 min 5 s, ±20% jitter, Retry-After up to an hour", () => {
    const config = loadConfig({});
    expect(config.webhookSchedule).toEqual([5 * S, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H, 14 * H, 20 * H, 24 * H]);
    expect(config.webhookSchedule.reduce((a, b) => a + b, 0)).toBe(75 * H + 35 * M + 5 * S);
    expect(config.webhookJitter).toBe(0.2);
    expect(config.webhookMaxRetryAfterMs).toBe(H);
    expect(DEFAULTS.webhookSchedule).toEqual(config.webhookSchedule);
  });

  test("AGENTQ_WEBHOOK_SCHEDULE sets the schedule (the issue's example, and none: no retry)", () => {
    expect(loadConfig({ AGENTQ_WEBHOOK_SCHEDULE: "5s,5m,30m,2h,5h,10h,10h" }).webhookSchedule).toEqual([5 * S, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H, 10 * H]);
    expect(loadConfig({ AGENTQ_WEBHOOK_SCHEDULE: "none" }).webhookSchedule).toEqual([]);
    expect(loadConfig({ AGENTQ_WEBHOOK_SCHEDULE: "1s,2s,4s" }).webhookSchedule).toEqual([1000, 2000, 4000]);
  });

  test("without it, AGENTQ_WEBHOOK_RETRIES / AGENTQ_WEBHOOK_BACKOFF_MS build a doubling schedule (the one not set takes 3 or 1000)", () => {
    expect(loadConfig({ AGENTQ_WEBHOOK_RETRIES: "3", AGENTQ_WEBHOOK_BACKOFF_MS: "1000" }).webhookSchedule).toEqual([1000, 2000, 4000]);
    expect(loadConfig({ AGENTQ_WEBHOOK_RETRIES: "5" }).webhookSchedule).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(loadConfig({ AGENTQ_WEBHOOK_BACKOFF_MS: "250" }).webhookSchedule).toEqual([250, 500, 1000]);
    expect(loadConfig({ AGENTQ_WEBHOOK_RETRIES: "0" }).webhookSchedule).toEqual([]);
  });

  test("a bad entry stops the start with a message naming AGENTQ_WEBHOOK_SCHEDULE, the entry and the value", () => {
    const error = configError({ AGENTQ_WEBHOOK_SCHEDULE: "5s,5 min,2h" });
    expect(error.problems).toEqual([
      'AGENTQ_WEBHOOK_SCHEDULE: entry 2 ("5 min") is not a duration (a number and a unit: ms, s, m, h or d, e.g. 5s, 30m, 2h) (got "5s,5 min,2h")',
    ]);
    expect(configError({ AGENTQ_WEBHOOK_SCHEDULE: "5s,40d" }).message).toContain('AGENTQ_WEBHOOK_SCHEDULE: entry 2 ("40d") is longer than the longest step allowed (30d)');
    // Alongside other bad variables, every one is named.
    const both = configError({ AGENTQ_WEBHOOK_SCHEDULE: "soon", PORT: "eighty" });
    expect(both.problems.map((p) => p.split(":")[0])).toEqual(["AGENTQ_WEBHOOK_SCHEDULE", "PORT"]);
  });

  test("the schedule and the older settings together are refused: one of them would be ignored", () => {
    expect(configError({ AGENTQ_WEBHOOK_SCHEDULE: "5s", AGENTQ_WEBHOOK_RETRIES: "3" }).problems).toEqual([
      "AGENTQ_WEBHOOK_SCHEDULE: set it or AGENTQ_WEBHOOK_RETRIES, not both (the schedule replaces them; see README, Configuration)",
    ]);
    expect(configError({ AGENTQ_WEBHOOK_SCHEDULE: "5s", AGENTQ_WEBHOOK_RETRIES: "3", AGENTQ_WEBHOOK_BACKOFF_MS: "10" }).message).toContain(
      "set it or AGENTQ_WEBHOOK_RETRIES and AGENTQ_WEBHOOK_BACKOFF_MS, not both",
    );
  });

  test("bad older settings, a doubled wait past 30 days and a bad jitter are named", () => {
    expect(configError({ AGENTQ_WEBHOOK_RETRIES: "21" }).problems).toEqual(['AGENTQ_WEBHOOK_RETRIES: Expected an integer from 0 to 20 (got "21")']);
    expect(configError({ AGENTQ_WEBHOOK_BACKOFF_MS: "-5" }).problems).toEqual(['AGENTQ_WEBHOOK_BACKOFF_MS: Expected an integer of at least 0 (got "-5")']);
    expect(configError({ AGENTQ_WEBHOOK_RETRIES: "20", AGENTQ_WEBHOOK_BACKOFF_MS: "10000" }).message).toContain("is longer than 30 days");
    expect(configError({ AGENTQ_WEBHOOK_JITTER: "1.5" }).message).toContain("AGENTQ_WEBHOOK_JITTER");
    expect(configError({ AGENTQ_WEBHOOK_JITTER: "lots" }).message).toContain("AGENTQ_WEBHOOK_JITTER");
    expect(loadConfig({ AGENTQ_WEBHOOK_JITTER: "0" }).webhookJitter).toBe(0);
  });

  test("an override replaces the environment's schedule (and its problems); a bad override is refused too", () => {
    expect(loadConfig({ AGENTQ_WEBHOOK_SCHEDULE: "junk" }, { webhookSchedule: [10, 20] }).webhookSchedule).toEqual([10, 20]);
    expect(() => loadConfig({}, { webhookSchedule: [-1] })).toThrow("AGENTQ_WEBHOOK_SCHEDULE");
  });

  test("the programs refuse to start on a bad schedule: exit 78 and the message on stderr", () => {
    const run = Bun.spawnSync(["bun", "src/cli/supervisor.ts"], {
      env: { ...process.env, AGENTQ_WEBHOOK_SCHEDULE: "5s,5m,never", DATABASE_URL: "postgres://root@127.0.0.1:1/none" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(run.exitCode).toBe(78);
    expect(run.stderr.toString()).toContain('AGENTQ_WEBHOOK_SCHEDULE: entry 3 ("never") is not a duration');
  });
});

describe("the wait before the next attempt", () => {
  const policy: RetryPolicy = { schedule: [5 * S, 5 * M, 30 * M], jitter: 0.2, maxRetryAfterMs: H };
  const fixed = (value: number) => () => value;

  test("step n of the schedule follows the failure of attempt n; past the last step the delivery is over", () => {
    const none = { ...policy, jitter: 0 };
    expect([1, 2, 3].map((n) => retryDelayMs(none, n, null))).toEqual([5 * S, 5 * M, 30 * M]);
    expect(retryDelayMs(none, 4, null)).toBeNull();
    expect(retryDelayMs({ ...none, schedule: [] }, 1, null)).toBeNull();
  });

  test("jitter spreads each step over ±20% of it, uniformly (random 0 → 80%, 0.5 → 100%, just under 1 → just under 120%)", () => {
    expect(retryDelayMs(policy, 2, null, fixed(0))).toBe(4 * M);
    expect(retryDelayMs(policy, 2, null, fixed(0.5))).toBe(5 * M);
    expect(retryDelayMs(policy, 2, null, fixed(0.999999))).toBeCloseTo(6 * M, -1);
    const samples = Array.from({ length: 2000 }, () => retryDelayMs(policy, 3, null)!);
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(24 * M);
    expect(Math.max(...samples)).toBeLessThan(36 * M);
    // Spread over the whole band, not bunched: each fifth of it gets a fair share.
    const fifths = [0, 0, 0, 0, 0];
    for (const s of samples) fifths[Math.min(4, Math.floor((s - 24 * M) / (2.4 * M)))]!++;
    for (const n of fifths) expect(n).toBeGreaterThan(300);
  });

  test("Retry-After is a floor: the larger of it and the step, never earlier than the receiver asked, spread upwards only", () => {
    expect(retryDelayMs({ ...policy, jitter: 0 }, 1, 120 * S)).toBe(120 * S); // asked more than the 5 s step
    expect(retryDelayMs({ ...policy, jitter: 0 }, 2, 10 * S)).toBe(5 * M); // asked less than the 5 min step
    expect(retryDelayMs(policy, 1, 120 * S, fixed(0))).toBe(120 * S);
    expect(retryDelayMs(policy, 1, 120 * S, fixed(0.5))).toBe(132 * S);
  });

  test("Retry-After is capped at AGENTQ_WEBHOOK_MAX_RETRY_AFTER_MS", () => {
    expect(retryDelayMs({ ...policy, jitter: 0, maxRetryAfterMs: 60 * S }, 1, 24 * H)).toBe(60 * S);
    expect(retryDelayMs({ ...policy, jitter: 0, maxRetryAfterMs: 0 }, 1, 24 * H)).toBe(5 * S); // 0: ignored
  });

  test("Retry-After in seconds or as an HTTP date", () => {
    const now = Date.parse("2026-12-01T10:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120 * S);
    expect(parseRetryAfter("Tue, 01 Dec 2026 10:02:00 GMT", now)).toBe(120 * S);
    expect(parseRetryAfter("Tue, 01 Dec 2026 09:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter(null, now)).toBeNull();
  });

  test("which failures end the delivery: 410 gone, unsafe URL, other 4xx and 3xx rejected; 5xx, 408, 429, timeouts retried", () => {
    const outcome = (statusCode: number | null, result: "http_error" | "timeout" | "network_error" | "unsafe_url", retryable: boolean) => ({
      result,
      statusCode,
      error: null,
      durationMs: 1,
      retryable,
      retryAfterMs: null,
    });
    expect(deadReasonOf(outcome(410, "http_error", false))).toBe("gone");
    expect(deadReasonOf(outcome(null, "unsafe_url", false))).toBe("unsafe_url");
    expect(deadReasonOf(outcome(404, "http_error", false))).toBe("rejected");
    expect(deadReasonOf(outcome(302, "http_error", false))).toBe("rejected");
    expect(deadReasonOf(outcome(503, "http_error", true))).toBeNull();
    expect(deadReasonOf(outcome(null, "timeout", true))).toBeNull();
  });
});
