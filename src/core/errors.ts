/**
 * Errors are values with a `code`. The API maps codes to HTTP statuses in one
 * table (src/api/errors.ts); nothing else decides a status code.
 */
export type ErrorCode =
  | "validation_error"
  | "malformed_json"
  | "unsupported_media_type"
  | "payload_too_large"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "unknown_taxonomy_node"
  | "taxonomy_cycle"
  | "too_many_documents"
  | "too_many_agents"
  | "dependency_unavailable"
  | "unsafe_webhook_url"
  | "webhooks_not_configured"
  | "background_refresh_disabled"
  | "too_many_streams"
  | "rate_limited";

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "AppError";
  }
}

export const notFound = (what: string, id: string) => new AppError("not_found", `${what} ${id} not found`, { id });
