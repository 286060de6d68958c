/**
 * When a schedule runs next: pure functions of the schedule and a given `now` (no clock read
 * here), so they are tested with fixed instants. Cron expressions are parsed and stepped by
 * croner (time zones and DST included), never by hand; this module only checks input, names
 * the part of an expression that is wrong, and lays out the fixed-interval grid.
 */
import { Cron } from "croner";

export interface ScheduleTiming {
  cron: string | null;
  every_seconds: number | null;
  /** IANA name (or UTC offset) the cron expression is read in; ignored by every_seconds. */
  timezone: string;
}

/** Five fields (minute precision) or six (seconds first); also croner's nicknames (@daily, @hourly, ...). */
const CRON_MODE = "5-or-6-parts" as const;

const FIELDS_5 = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const FIELDS_6 = ["second", ...FIELDS_5];

/** A schedule input the API refuses: `field` is the body property at fault (cron or timezone). */
export class ScheduleInputError extends Error {
  constructor(
    readonly field: "cron" | "timezone",
    message: string,
    readonly cronField?: string,
  ) {
    super(message);
    this.name = "ScheduleInputError";
  }
}

const croner = (expression: string, timezone: string) => new Cron(expression, { timezone, paused: true, mode: CRON_MODE });

const reason = (error: unknown) => (error instanceof Error ? error.message : String(error)).replace(/^CronPattern:\s*/, "");

/** Which field of a 5- or 6-part expression croner refuses on its own, if one does. */
function faultyField(expression: string): string | undefined {
  const parts = expression.trim().split(/\s+/);
  const names = parts.length === 5 ? FIELDS_5 : parts.length === 6 ? FIELDS_6 : undefined;
  if (!names) return undefined;
  for (let i = 0; i < parts.length; i++) {
    const probe = parts.map((part, j) => (j === i ? part : "*")).join(" ");
    try {
      croner(probe, "UTC");
    } catch {
      return names[i];
    }
  }
  return undefined;
}

/**
 * The canonical name of a time zone (`europe/paris` -> `Europe/Paris`, `utc` -> `UTC`), or a
 * ScheduleInputError naming `timezone`. The runtime's own time zone database decides (Intl),
 * the same one croner steps through.
 */
export function canonicalTimezone(timezone: string): string {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    throw new ScheduleInputError("timezone", `unknown time zone ${JSON.stringify(timezone.slice(0, 64))}; use an IANA name such as Europe/Paris, or UTC`);
  }
}

/**
 * Checks a cron expression in a time zone: it must parse and match some future instant after
 * `now`. Throws a ScheduleInputError naming `cron` (and the part of the expression at fault).
 */
export function checkCron(expression: string, timezone: string, now: Date): void {
  let job: Cron;
  try {
    job = croner(expression, timezone);
  } catch (error) {
    const field = faultyField(expression);
    throw new ScheduleInputError("cron", field ? `${field} field: ${reason(error)}` : reason(error), field);
  }
  if (!job.nextRun(now)) throw new ScheduleInputError("cron", "the expression matches no future date");
}

/**
 * The first run strictly after `now`, or null when there is none (a cron expression that
 * matches no later date).
 *
 * - cron: croner's next match after `now`, read in the schedule's time zone (a time that a DST
 *   change skips runs at the first valid time after the gap; a repeated hour runs once).
 * - every_seconds: the next point of the grid `anchor + k * every_seconds` after `now`; without
 *   an anchor (a new schedule) that is `now + every_seconds`, which becomes the grid's origin.
 *
 * Either way the answer depends only on `now`, not on how many runs were missed before it: a
 * scheduler that was down for many slots fires once, then continues from the next slot.
 */
export function nextRunAfter(timing: ScheduleTiming, now: Date, anchor?: Date): Date | null {
  if (timing.every_seconds !== null) {
    const step = timing.every_seconds * 1000;
    if (!anchor) return new Date(now.getTime() + step);
    const elapsed = now.getTime() - anchor.getTime();
    if (elapsed < 0) return anchor;
    return new Date(anchor.getTime() + (Math.floor(elapsed / step) + 1) * step);
  }
  if (timing.cron === null) throw new Error("a schedule has either cron or every_seconds");
  return croner(timing.cron, timing.timezone).nextRun(now) ?? null;
}
