/**
 * Limits of the agents' free-form JSON settings. retrieval_config and features_config are
 * stored as jsonb and returned with every agent, so each has a depth and a size limit of
 * its own, tighter than the body's: PostgreSQL's jsonb parser and JSON.stringify recurse
 * per level, and a large config would be paid for by every list of agents.
 */
import type { Config } from "../../config.ts";
import { AppError } from "../../core/errors.ts";
import { valueDepth } from "../jsonLimits.ts";

const CONFIG_FIELDS = ["retrieval_config", "features_config"] as const;

export type ConfigLimits = Pick<Config, "maxConfigDepth" | "maxConfigBytes">;

/** Throws 400 validation_error naming each config field over its limits. */
export function assertConfigsWithinLimits(body: Partial<Record<(typeof CONFIG_FIELDS)[number], unknown>>, limits: ConfigLimits): void {
  const issues: { path: string; message: string }[] = [];
  for (const field of CONFIG_FIELDS) {
    const value = body[field];
    if (value === undefined) continue;
    if (valueDepth(value, limits.maxConfigDepth) > limits.maxConfigDepth)
      issues.push({ path: `/${field}`, message: `nested deeper than ${limits.maxConfigDepth} levels` });
    else if (Buffer.byteLength(JSON.stringify(value)) > limits.maxConfigBytes)
      issues.push({ path: `/${field}`, message: `larger than ${limits.maxConfigBytes} bytes of JSON` });
  }
  const first = issues[0];
  if (first)
    throw new AppError("validation_error", `invalid body: ${first.path} ${first.message}`, {
      on: "body",
      max_depth: limits.maxConfigDepth,
      max_bytes: limits.maxConfigBytes,
      issues,
    });
}
