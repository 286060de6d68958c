/** Conversions of raw driver values (drizzle hands timestamptz to raw queries as text). */

/** ISO-8601 in UTC (`...Z`) from a Date or PostgreSQL's `2026-01-02 03:04:05.678+00` text. */
export function toIso(value: string | Date): string {
  if (value instanceof Date) return value.toISOString();
  const normalized = value.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00");
  return new Date(normalized).toISOString();
}

export const toIsoOrNull = (value: string | Date | null | undefined): string | null =>
  value === null || value === undefined ? null : toIso(value);
