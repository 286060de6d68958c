/**
 * The task list's cursor: opaque to clients (base64url), a position in the newest-first order
 * (the created_at with microseconds and the task_id of a page's last task). Decoding accepts
 * only what encode() produces (canonical base64url, this version, a real instant, a task id);
 * anything else is 400 validation_error, before any query. A cursor is a position, not a
 * handle: it stays valid after its task is deleted, and pages never repeat or skip a task.
 */
import { AppError } from "../../core/errors.ts";
import { TASK_ID_PATTERN } from "../../core/tasks.ts";
import type { ListPosition } from "../../db/tasks/list.ts";
import { timestampProblem } from "../timestamps.ts";

const VERSION = "1";
const DECODED = new RegExp(`^${VERSION}\\|(\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6})\\|(${TASK_ID_PATTERN.slice(1, -1)})$`);

export const CURSOR_MAX_LENGTH = 200;

export function encodeCursor(position: ListPosition): string {
  return Buffer.from(`${VERSION}|${position.createdAt}|${position.taskId}`, "utf8").toString("base64url");
}

const refuse = (why: string): never => {
  const message = `${why}; pass next_cursor from a previous page unchanged`;
  throw new AppError("validation_error", `invalid query: /cursor ${message}`, { on: "query", issues: [{ path: "/cursor", message }] });
};

export function decodeCursor(cursor: string): ListPosition {
  if (cursor.length > CURSOR_MAX_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) return refuse("is not a cursor of this API");
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const match = DECODED.exec(text);
  // Canonical only: the same position has exactly one spelling.
  if (!match || Buffer.from(text, "utf8").toString("base64url") !== cursor) return refuse("is not a cursor of this API");
  const [, createdAt, taskId] = match as unknown as [string, string, string];
  if (timestampProblem(`${createdAt}Z`) !== null) return refuse("names no possible position");
  return { createdAt, taskId };
}
