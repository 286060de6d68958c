/** Schemas shared by several resources. */
import { t } from "elysia";
import { ErrorBody } from "./errors.ts";

export const Uuid = t.String({ format: "uuid", description: "UUID" });
export const Timestamp = t.String({ format: "date-time", description: "ISO-8601 timestamp" });
export const Version = t.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9._-]+$", description: "Taxonomy version, e.g. 1.0.0" });

/** Error responses every authenticated route can give. */
export const authErrors = {
  400: ErrorBody,
  401: ErrorBody,
  413: ErrorBody,
  429: ErrorBody,
  503: ErrorBody,
} as const;
