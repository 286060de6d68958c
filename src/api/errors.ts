/**
 * The one place that turns errors into HTTP responses: AppError codes, Elysia's
 * own errors and PostgreSQL error classes all map to `{error: {code, message, details}}`.
 */
import { t } from "elysia";
import { ValueErrorType, type ValueError } from "@sinclair/typebox/errors";
import { AppError, type ErrorCode } from "../core/errors.ts";
import { isTransientDbError, sqlState } from "../db/errors.ts";
import { preview, truncate } from "./jsonLimits.ts";

/** ioredis gives up on a command when it cannot reach Redis. */
const isRedisUnavailable = (error: unknown) =>
  error instanceof Error && /Connection is closed|MaxRetriesPerRequestError|Reached the max retries/i.test(`${error.name} ${error.message}`);

export const ErrorBody = t.Object(
  {
    error: t.Object({
      code: t.String({ description: "Stable machine-readable error code" }),
      message: t.String({ description: "Human-readable explanation" }),
      details: t.Optional(t.Unknown({ description: "Structured context, e.g. the invalid fields" })),
    }),
  },
  { description: "The error shape of every non-2xx response" },
);

export const STATUS_OF: Record<ErrorCode, number> = {
  validation_error: 400,
  malformed_json: 400,
  unknown_taxonomy_node: 400,
  too_many_documents: 400,
  too_many_agents: 400,
  unsafe_webhook_url: 400,
  webhooks_not_configured: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  taxonomy_cycle: 422,
  rate_limited: 429,
  dependency_unavailable: 503,
  background_refresh_disabled: 503,
  too_many_streams: 503,
};

export interface ErrorResponse {
  status: number;
  body: { error: { code: string; message: string; details?: unknown } };
}

const respond = (status: number, code: string, message: string, details?: unknown): ErrorResponse => ({
  status,
  body: { error: details === undefined ? { code, message } : { code, message, details } },
});

interface ValidationIssue {
  path: string;
  message: string;
}

/** Issues reported per error; a body with more problems than this is not walked further. */
const MAX_ISSUES = 20;

/** The allowed values when the schema is a choice of literals (e.g. priority), else undefined. */
function literalChoices(schema: { anyOf?: unknown[] } | undefined): string | undefined {
  const options = schema?.anyOf;
  if (!Array.isArray(options) || options.length === 0) return undefined;
  if (!options.every((o) => typeof o === "object" && o !== null && "const" in o)) return undefined;
  return truncate(options.map((o) => preview((o as { const: unknown }).const)).join(", "), 500);
}

/**
 * One issue in words. TypeBox's own messages never quote the value; where we name it, it is
 * through preview(), so no input, however long or deep, makes the message long or the
 * formatting slow. (Elysia's summaries interpolate the whole value: a value 5,000 levels
 * deep overflowed the stack while formatting.)
 */
function describeIssue(e: ValueError): string {
  // TypeBox words a failed choice of literals by their types ("one of: 'string', 'string'"): name the values.
  const choices = literalChoices(e.schema as { anyOf?: unknown[] });
  if (choices) return `must be one of ${choices}`;
  const property = e.path ? `Property '${truncate(e.path.slice(1).replaceAll("/", "."), 200)}'` : "Value";
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      return `${property} should not be provided`;
    case ValueErrorType.ObjectRequiredProperty:
      return `${property} is missing`;
    case ValueErrorType.StringFormat:
      return `${property} should be ${String((e.schema as { format?: string }).format)}`;
    case ValueErrorType.String:
      return `Expected string but found ${preview(e.value)}`;
    default:
      return truncate(e.message, 500);
  }
}

interface FailedValidation {
  validator?: { Errors?: (value: unknown) => Iterable<ValueError> };
  value?: unknown;
}

function validationIssues(error: unknown): ValidationIssue[] {
  const { validator, value } = error as FailedValidation;
  const issues: ValidationIssue[] = [];
  if (typeof validator?.Errors !== "function") return issues;
  for (const e of validator.Errors(value)) {
    issues.push({ path: e.path ? truncate(e.path, 200) : "/", message: describeIssue(e) });
    if (issues.length >= MAX_ISSUES) break;
  }
  return issues;
}

/** PostgreSQL SQLSTATEs that mean the client sent something the database refuses. */
const PG_CLIENT_ERRORS: Record<string, { status: number; code: string; message: string }> = {
  "22P02": { status: 400, code: "validation_error", message: "a value has the wrong format" },
  "22007": { status: 400, code: "validation_error", message: "a date or time has the wrong format" },
  "22008": { status: 400, code: "validation_error", message: "a date or time is out of range or not a calendar date" },
  // stack depth limit exceeded: a jsonb value nested too deeply for PostgreSQL's parser.
  "54001": { status: 400, code: "validation_error", message: "a value is nested too deeply" },
  // program limit exceeded, e.g. an index row larger than a page.
  "54000": { status: 400, code: "validation_error", message: "a value is larger than the database accepts" },
  "22003": { status: 400, code: "validation_error", message: "a number is out of range" },
  "22001": { status: 400, code: "validation_error", message: "a value is too long" },
  // NUL ("\u0000") in text: jsonb refuses the escape (22P05), a text parameter the byte (22021).
  "22P05": { status: 400, code: "validation_error", message: "a text value contains a character that cannot be stored (e.g. NUL)" },
  "22021": { status: 400, code: "validation_error", message: "a text value contains a character that cannot be stored (e.g. NUL)" },
  "23514": { status: 400, code: "validation_error", message: "a value violates a constraint" },
  "23503": { status: 400, code: "validation_error", message: "a referenced row does not exist" },
  "23505": { status: 409, code: "conflict", message: "a row with this key already exists" },
  "40001": { status: 409, code: "conflict", message: "a concurrent change conflicted; retry" },
  "40P01": { status: 409, code: "conflict", message: "a concurrent change conflicted; retry" },
};

/** Class 22 is "data exception": whatever its subclass, the value sent is at fault. */
const DATA_EXCEPTION = { status: 400, code: "validation_error", message: "a value is not acceptable to the database" };

const pgClientError = (state: string | undefined) =>
  state === undefined ? undefined : (PG_CLIENT_ERRORS[state] ?? (state.startsWith("22") ? DATA_EXCEPTION : undefined));

/**
 * A thrown value as a log field, bounded: a driver error's message can carry the statement
 * and every parameter (a 40 KB body made a 122 KB log line), so text is cut and only the
 * fields worth reading are kept, down a short chain of causes.
 */
export function errorForLog(error: unknown, depth = 0): unknown {
  if (!(error instanceof Error)) return preview(error, { maxLength: 2000, maxDepth: 3 });
  const { code, cause } = error as { code?: unknown; cause?: unknown };
  return {
    type: error.name,
    message: truncate(error.message, 2000),
    ...(typeof code === "string" || typeof code === "number" ? { code } : {}),
    stack: truncate(error.stack ?? "", 4000),
    ...(cause !== undefined && depth < 3 ? { cause: errorForLog(cause, depth + 1) } : {}),
  };
}


/**
 * Maps any thrown value to a response. `elysiaCode` is the code Elysia gives its
 * own errors ("VALIDATION", "PARSE", "NOT_FOUND", ...). Returns `internal` true
 * for the ones that are our fault and must be logged.
 */
export function toErrorResponse(elysiaCode: string | number, error: unknown): ErrorResponse & { internal: boolean } {
  const cause = (error as { cause?: unknown })?.cause;
  if (error instanceof AppError) return { ...respond(STATUS_OF[error.code], error.code, error.message, error.details), internal: false };
  if (elysiaCode === "PARSE") {
    if (cause instanceof AppError) return { ...respond(STATUS_OF[cause.code], cause.code, cause.message, cause.details), internal: false };
    return { ...respond(400, "malformed_json", "the request body is not valid JSON"), internal: false };
  }
  if (elysiaCode === "VALIDATION") {
    // Elysia reports a query value that failed after numeric coercion as `on: "property"` without its name.
    const raw = (error as { type?: string }).type ?? "request";
    const on = raw === "property" ? "query" : raw;
    const issues = validationIssues(error);
    const first = issues[0];
    const found = raw === "property" ? ` (value ${preview((error as { value?: unknown }).value)})` : "";
    const where = first && first.path !== "/" ? `${first.path} ` : "";
    const message = first ? `invalid ${on}: ${where}${first.message}${found}` : `invalid ${on}`;
    return { ...respond(400, "validation_error", message, { on, issues }), internal: false };
  }
  if (elysiaCode === "NOT_FOUND") return { ...respond(404, "not_found", "no such route"), internal: false };
  if (elysiaCode === "INVALID_COOKIE_SIGNATURE" || elysiaCode === "INVALID_FILE_TYPE")
    return { ...respond(400, "validation_error", String((error as Error).message)), internal: false };
  // Drizzle wraps the driver's error (DrizzleQueryError) and keeps the PostgresError as `cause`.
  const pg = sqlState(error);
  const mapped = pgClientError(pg?.code);
  if (mapped) {
    const detail = typeof pg?.detail === "string" ? truncate(pg.detail, 500) : undefined;
    return { ...respond(mapped.status, mapped.code, mapped.message, { detail }), internal: false };
  }
  if (isTransientDbError(error) || isRedisUnavailable(error))
    return { ...respond(503, "dependency_unavailable", "a backing service is unavailable; retry later"), internal: true };
  return { ...respond(500, "internal_error", "internal error"), internal: true };
}
