/**
 * Classifies database errors: a lost or refused connection is the
 * infrastructure's fault and worth a retry; anything else is the statement's.
 */
const TRANSIENT_CODES = new Set([
  // postgres.js connection states
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  // sockets
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  // PostgreSQL: admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
]);

/** True when `error`, or an error it wraps (Drizzle keeps the driver's as `cause`), has a code `matches` accepts. */
export function hasErrorCode(error: unknown, matches: (code: string) => boolean): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && matches(code)) return true;
  }
  return false;
}

/** True when `error` (or the error it wraps) means the connection failed. */
export const isTransientDbError = (error: unknown): boolean => hasErrorCode(error, (code) => TRANSIENT_CODES.has(code));

/** A foreign key violation (23503): the row referred to does not exist. */
export const isForeignKeyViolation = (error: unknown): boolean => hasErrorCode(error, (code) => code === "23503");

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE (and detail) of a PostgreSQL error, or of the one it wraps; undefined for anything else. */
export function sqlState(error: unknown): { code: string; detail?: unknown } | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, detail } = e as { code?: unknown; detail?: unknown };
    if (typeof code === "string" && SQLSTATE.test(code)) return { code, detail };
  }
  return undefined;
}
