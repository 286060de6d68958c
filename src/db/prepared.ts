/**
 * Runs a Drizzle `sql` query as a named prepared statement on postgres.js.
 * Drizzle's `db.execute` never prepares raw SQL, so PostgreSQL parses and
 * plans it on every call; on the task hot path (claim, progress, coverage
 * steps, completion) that was about half of the database's CPU per task.
 *
 * With a `signal`, aborting it cancels the statement inside PostgreSQL
 * (postgres.js sends a CancelRequest for the backend running it), so a task's
 * cancel, timeout or lost lease stops its SQL at once instead of leaving the
 * backend running an abandoned query.
 */
import type { SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import type postgres from "postgres";
import type { DbOrTx } from "./client.ts";

const dialect = new PgDialect();

type WithClient = { $client?: postgres.Sql };

export interface QueryOptions {
  /** Aborting it cancels the statement in PostgreSQL; the query then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export async function queryPrepared<T extends Record<string, unknown>>(db: DbOrTx, query: SQL, options: QueryOptions = {}): Promise<T[]> {
  const { signal } = options;
  signal?.throwIfAborted();
  const client = (db as WithClient).$client;
  // Inside a Drizzle transaction there is no top-level client: run it unprepared there.
  if (!client) return [...(await db.execute(query))] as T[];
  const { sql: text, params } = dialect.sqlToQuery(query);
  const pending = client.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
  if (!signal) return (await pending) as unknown as T[];
  const cancel = () => void pending.cancel();
  signal.addEventListener("abort", cancel, { once: true });
  try {
    return (await pending) as unknown as T[];
  } catch (error) {
    // PostgreSQL's "canceling statement due to user request" is our own abort: report why we aborted.
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}
