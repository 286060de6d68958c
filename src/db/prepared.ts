/**
 * Runs a Drizzle `sql` query as a named prepared statement on postgres.js.
 * Drizzle's `db.execute` never prepares raw SQL, so PostgreSQL parses and
 * plans it on every call; on the task hot path (claim, progress, coverage
 * steps, completion) that was about half of the database's CPU per task.
 *
 * With a `signal`, aborting it cancels the statement inside PostgreSQL
 * (postgres.js sends a CancelRequest for the backend running it), so a task's
 * cancel, timeout or lost lease stops its SQL at once instead of leaving the
 * backend running an abandoned query; such a statement has its connection to
 * itself (see `cancellable`).
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
  const run = (on: postgres.Sql) => on.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
  if (!signal) return (await run(client)) as unknown as T[];
  return cancellable<T>(client, run, signal);
}

/**
 * A cancel request names a backend, not a statement: PostgreSQL cancels whatever that backend
 * runs when the request arrives. On a pooled connection the driver pipelines other statements
 * behind ours, and a cancel sent as ours finishes kills the next one (another task's progress,
 * measurement or settle: measured: about half the statements queued behind a cancelled one).
 * So a cancellable statement runs on a connection reserved for it, and after a cancel the
 * connection goes back to the pool only once that cancel has been used up (absorbCancel).
 */
async function cancellable<T>(client: postgres.Sql, run: (on: postgres.Sql) => ReturnType<postgres.Sql["unsafe"]>, signal: AbortSignal): Promise<T[]> {
  const reserved = await reserveUnlessAborted(client, signal);
  const sent: { cancel: Promise<unknown> | null } = { cancel: null };
  const pending = run(reserved);
  // postgres.js types cancel() as void; patched, it returns the cancel request's promise.
  const cancel = () => void (sent.cancel = Promise.resolve(pending.cancel() as unknown).catch(() => {}));
  signal.addEventListener("abort", cancel, { once: true });
  try {
    return (await pending) as unknown as T[];
  } catch (error) {
    // PostgreSQL's "canceling statement due to user request" is our own abort: report why we aborted.
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", cancel);
    // The caller goes on at once; the connection waits for its cancel request to be handled.
    if (sent.cancel) void sent.cancel.then(() => absorbCancel(reserved)).finally(() => reserved.release());
    else reserved.release();
  }
}

/** A connection of its own, or the abort's reason at once if the abort comes while every connection is busy. */
function reserveUnlessAborted(client: postgres.Sql, signal: AbortSignal): Promise<postgres.ReservedSql> {
  const reserving = client.reserve();
  return new Promise((resolve, reject) => {
    const abort = () => {
      reject(signal.reason);
      reserving.then((reserved) => reserved.release(), () => {});
    };
    if (signal.aborted) return abort();
    signal.addEventListener("abort", abort, { once: true });
    reserving.then(
      (reserved) => {
        signal.removeEventListener("abort", abort);
        if (signal.aborted) return; // abort() released it
        resolve(reserved);
      },
      (error) => {
        signal.removeEventListener("abort", abort);
        reject(error);
      },
    );
  });
}

/**
 * Once the cancel request's connection has closed, the backend has been signalled, but a
 * backend that had just finished our statement may still hold the cancel pending and throw
 * it at the next statement it reads. A trivial statement takes it (failing with 57014) or runs
 * clean; one is enough, as one cancel was sent. Any other failure is a broken connection,
 * which the pool replaces.
 */
async function absorbCancel(reserved: postgres.ReservedSql): Promise<void> {
  await reserved`select 1`.catch(() => {});
}
