/**
 * Timestamps a client sends, checked as real instants before they reach a query.
 *
 * The `date-time` format check lets through strings PostgreSQL refuses (a 500 before):
 * impossible calendar dates (2024-02-30, 2023-02-29, 2024-06-31), year 0000, years past
 * 9999 (JavaScript goes to 275760), and offsets past PostgreSQL's ±15:59. What is accepted
 * is RFC 3339: `YYYY-MM-DDTHH:MM[:SS[.fraction]]` with `Z` or `±HH:MM`, a real calendar
 * date in years 0001-9999, hours 00-23, minutes and seconds 00-59 (no leap second), and an
 * offset of at most 15:59. Every such string is one PostgreSQL reads as the same instant,
 * so it is passed on unchanged (with its full fraction).
 */
import { AppError } from "../core/errors.ts";
import { preview } from "./jsonLimits.ts";

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?([Zz]|[+-](\d{2}):(\d{2}))$/;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** PostgreSQL refuses a time zone offset of 16 hours or more. */
const MAX_OFFSET_HOURS = 15;

const isLeapYear = (year: number) => year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);

/** Why `text` is not an acceptable timestamp, or null when it is. */
export function timestampProblem(text: string): string | null {
  const m = RFC3339.exec(text);
  if (!m) return "must be an RFC 3339 date-time with a time zone, e.g. 2024-03-01T00:00:00Z";
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? "0"].map(Number) as number[];
  if (year! < 1) return "year must be 0001 to 9999";
  if (month! < 1 || month! > 12) return `month ${m[2]} does not exist`;
  const days = month === 2 && isLeapYear(year!) ? 29 : DAYS_IN_MONTH[month! - 1]!;
  if (day! < 1 || day! > days) return `${m[1]}-${m[2]}-${m[3]} is not a calendar date`;
  if (hour! > 23 || minute! > 59 || second! > 59) return `${m[4]}:${m[5]}${m[6] ? `:${m[6]}` : ""} is not a time of day`;
  if (m[9] !== undefined && (Number(m[9]) > MAX_OFFSET_HOURS || Number(m[10]) > 59))
    return `time zone offset ${m[8]} is out of range (at most ±${MAX_OFFSET_HOURS}:59)`;
  return null;
}

/** Throws 400 validation_error naming the first of `values` that is not an acceptable timestamp. */
export function assertTimestamps(on: "query" | "body", values: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const problem = timestampProblem(value);
    if (problem === null) continue;
    const message = `${problem} (value ${preview(value)})`;
    throw new AppError("validation_error", `invalid ${on}: /${name} ${message}`, { on, issues: [{ path: `/${name}`, message }] });
  }
}
