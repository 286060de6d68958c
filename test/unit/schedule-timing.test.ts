/**
 * Next-run times of schedules (src/schedules/timing.ts), from fixed instants: cron read in
 * the schedule's time zone (DST gaps and repeats included), the fixed-interval grid, catch-up
 * after missed slots, and the checks the API answers 400 with.
 */
import { describe, expect, test } from "bun:test";
import { canonicalTimezone, checkCron, nextRunAfter, ScheduleInputError } from "../../src/schedules/timing.ts";

const at = (iso: string) => new Date(iso);
const cron = (expression: string, timezone = "UTC") => ({ cron: expression, every_seconds: null, timezone });
const every = (seconds: number) => ({ cron: null, every_seconds: seconds, timezone: "UTC" });
const iso = (d: Date | null) => d?.toISOString() ?? null;

function inputError(run: () => void): ScheduleInputError {
  try {
    run();
  } catch (error) {
    if (error instanceof ScheduleInputError) return error;
    throw error;
  }
  throw new Error("expected a ScheduleInputError");
}

describe("cron in a time zone", () => {
  test("0 3 * * * in Europe/Paris is 03:00 Paris time: 01:00Z in summer (CEST), 02:00Z in winter (CET)", () => {
    const paris = cron("0 3 * * *", "Europe/Paris");
    expect(iso(nextRunAfter(paris, at("2025-06-01T00:30:00Z")))).toBe("2025-06-01T01:00:00.000Z");
    expect(iso(nextRunAfter(paris, at("2025-01-15T10:00:00Z")))).toBe("2025-01-16T02:00:00.000Z");
    // The same expression in UTC.
    expect(iso(nextRunAfter(cron("0 3 * * *"), at("2025-06-01T00:30:00Z")))).toBe("2025-06-01T03:00:00.000Z");
  });

  test("the next run is strictly after now: a slot fired at its exact instant is not returned again", () => {
    const paris = cron("0 3 * * *", "Europe/Paris");
    expect(iso(nextRunAfter(paris, at("2025-06-01T01:00:00.000Z")))).toBe("2025-06-02T01:00:00.000Z");
    expect(iso(nextRunAfter(paris, at("2025-06-01T00:59:59.999Z")))).toBe("2025-06-01T01:00:00.000Z");
  });

  test("a time skipped by the spring DST change runs at the first valid time after the gap; a repeated hour runs once", () => {
    const halfPastTwo = cron("30 2 * * *", "Europe/Paris");
    // 2025-03-30: Paris clocks go from 02:00 to 03:00, so 02:30 does not exist; it runs at 03:00 CEST.
    expect(iso(nextRunAfter(halfPastTwo, at("2025-03-29T12:00:00Z")))).toBe("2025-03-30T01:00:00.000Z");
    expect(iso(nextRunAfter(halfPastTwo, at("2025-03-30T01:00:00Z")))).toBe("2025-03-31T00:30:00.000Z");
    // 2025-10-26: 02:00-03:00 happens twice; 02:30 runs once (the first time, CEST), then 02:30 CET the next day.
    expect(iso(nextRunAfter(halfPastTwo, at("2025-10-25T12:00:00Z")))).toBe("2025-10-26T00:30:00.000Z");
    expect(iso(nextRunAfter(halfPastTwo, at("2025-10-26T00:30:00Z")))).toBe("2025-10-27T01:30:00.000Z");
  });

  test("weekdays, nicknames and a six-field expression with seconds", () => {
    // Monday to Friday at 09:00 in New York: Friday 2025-01-03 10:00 EST -> Monday 2025-01-06 09:00 EST (14:00Z).
    expect(iso(nextRunAfter(cron("0 9 * * 1-5", "America/New_York"), at("2025-01-03T15:00:00Z")))).toBe("2025-01-06T14:00:00.000Z");
    expect(iso(nextRunAfter(cron("@daily", "Asia/Tokyo"), at("2025-01-01T12:00:00Z")))).toBe("2025-01-01T15:00:00.000Z");
    expect(iso(nextRunAfter(cron("*/15 * * * * *"), at("2025-01-01T00:00:14.999Z")))).toBe("2025-01-01T00:00:15.000Z");
  });

  test("catch-up: however long ago the last slot was, the next run is the first one after now", () => {
    const hourly = cron("0 * * * *", "Europe/Paris");
    expect(iso(nextRunAfter(hourly, at("2025-06-01T10:20:00Z"), at("2025-05-01T00:00:00Z")))).toBe("2025-06-01T11:00:00.000Z");
  });
});

describe("every_seconds", () => {
  test("a new schedule's first run is one interval after now", () => {
    expect(iso(nextRunAfter(every(90), at("2025-01-01T00:00:00Z")))).toBe("2025-01-01T00:01:30.000Z");
  });

  test("later runs stay on the grid of the first one: the next grid point after now", () => {
    const anchor = at("2025-01-01T00:00:00Z");
    // Fired 120 ms late: the next slot is still anchor + 1 interval, not now + 1 interval.
    expect(iso(nextRunAfter(every(1), at("2025-01-01T00:00:00.120Z"), anchor))).toBe("2025-01-01T00:00:01.000Z");
    // Exactly on a grid point: the next one.
    expect(iso(nextRunAfter(every(60), at("2025-01-01T00:02:00Z"), anchor))).toBe("2025-01-01T00:03:00.000Z");
  });

  test("catch-up: three days of missed one-minute slots give one run, then the next grid point after now", () => {
    const anchor = at("2025-01-01T00:00:00Z");
    const now = at("2025-01-04T00:00:30.500Z");
    const next = nextRunAfter(every(60), now, anchor)!;
    expect(next.toISOString()).toBe("2025-01-04T00:01:00.000Z");
    expect(next.getTime()).toBeGreaterThan(now.getTime());
    expect(next.getTime() - now.getTime()).toBeLessThanOrEqual(60_000);
  });
});

describe("checks", () => {
  test("time zones are IANA names (or UTC offsets), answered in canonical spelling; unknown ones name the field", () => {
    expect(canonicalTimezone("Europe/Paris")).toBe("Europe/Paris");
    expect(canonicalTimezone("europe/paris")).toBe("Europe/Paris");
    expect(canonicalTimezone("utc")).toBe("UTC");
    const error = inputError(() => canonicalTimezone("Mars/Olympus"));
    expect(error.field).toBe("timezone");
    expect(error.message).toContain("Mars/Olympus");
  });

  test("a cron expression that does not parse names the cron field and the part of it at fault", () => {
    const now = at("2025-01-01T00:00:00Z");
    const cases: [string, string | undefined][] = [
      ["61 * * * *", "minute"],
      ["0 25 * * *", "hour"],
      ["0 0 32 * *", "day-of-month"],
      ["0 0 * 13 *", "month"],
      ["0 0 * * 8", "day-of-week"],
      ["*/0 * * * *", "minute"],
      ["61 0 0 * * *", "second"],
      ["x", undefined],
      ["* * * *", undefined],
      ["0 3 * * * * 2030", undefined],
    ];
    for (const [expression, part] of cases) {
      const error = inputError(() => checkCron(expression, "UTC", now));
      expect({ expression, field: error.field, part: error.cronField }).toEqual({ expression, field: "cron", part });
      if (part) expect(error.message).toStartWith(`${part} field: `);
    }
    expect(() => checkCron("0 3 * * *", "Europe/Paris", now)).not.toThrow();
  });

  test("an expression that never matches (30 February) is refused", () => {
    const error = inputError(() => checkCron("0 0 30 2 *", "UTC", at("2025-01-01T00:00:00Z")));
    expect(error.field).toBe("cron");
    expect(error.message).toContain("no future date");
  });
});
